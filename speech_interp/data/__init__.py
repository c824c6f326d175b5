"""What the analyses read: utterance files and splits, prompts with word positions, target tokens
and matched controls, clean / corrupted pairs.

Each object has one public import path, ``speech_interp.data``; the submodules hold the rules.
"""

from speech_interp.data.pairs import Alignment, Pair, PairError, align, make_pairs, validate_pair
from speech_interp.data.prompt import (
    MARKER,
    SPECIAL,
    SPEECH,
    TEXT,
    ExpressiveStreams,
    Prompt,
    build_prompt,
)
from speech_interp.data.targets import MISSING, Control, Target, TargetResolver, draw_controls
from speech_interp.data.uniqueness import UniquenessPoint, uniqueness_points
from speech_interp.data.utterances import (
    DataFormatError,
    UnknownSplit,
    Utterance,
    Word,
    is_seen,
    read_utterances,
    select_sentences,
    select_split,
    utterance_from_units,
    write_utterances,
)

__all__ = [
    "Alignment",
    "Control",
    "DataFormatError",
    "ExpressiveStreams",
    "MARKER",
    "MISSING",
    "Pair",
    "PairError",
    "Prompt",
    "SPECIAL",
    "SPEECH",
    "TEXT",
    "Target",
    "TargetResolver",
    "UniquenessPoint",
    "UnknownSplit",
    "Utterance",
    "Word",
    "align",
    "build_prompt",
    "draw_controls",
    "is_seen",
    "make_pairs",
    "read_utterances",
    "select_sentences",
    "select_split",
    "uniqueness_points",
    "utterance_from_units",
    "validate_pair",
    "write_utterances",
]
