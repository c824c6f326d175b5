"""The audio front end: audio loading, discrete units, unit extractors and word alignments.

What becomes of the units (prompts with word positions) lives in :mod:`speech_interp.data`.
"""

from .alignments import (
    SILENCE_LABELS,
    UNKNOWN_LABELS,
    AlignmentError,
    WordSpan,
    read_alignment,
    word_unit_spans,
)
from .audio import SAMPLE_RATE, AudioError, load_audio, prepare_waveform, require_torchaudio
from .linear_quantizer import LinearQuantizer
from .mfcc_kmeans import MfccKMeansExtractor, MfccSettings
from .mhubert import MHubertExtractor, load_centroids
from .units import (
    UnitExtractor,
    UnitSequence,
    dedup_units,
    extract_units,
    kmeans_assign,
    no_dedup,
)
from .utterance import SpokenUtterance, utterance_units

__all__ = [
    "SpokenUtterance",
    "utterance_units",
    "SAMPLE_RATE",
    "SILENCE_LABELS",
    "UNKNOWN_LABELS",
    "AlignmentError",
    "AudioError",
    "LinearQuantizer",
    "MHubertExtractor",
    "MfccKMeansExtractor",
    "MfccSettings",
    "UnitExtractor",
    "UnitSequence",
    "WordSpan",
    "dedup_units",
    "extract_units",
    "kmeans_assign",
    "load_audio",
    "load_centroids",
    "no_dedup",
    "prepare_waveform",
    "read_alignment",
    "require_torchaudio",
    "word_unit_spans",
]
