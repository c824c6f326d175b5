"""Speech input: audio loading, discrete units, unit extractors and word alignments."""

from .alignments import AlignmentError, WordSpan, read_alignment, word_unit_spans
from .audio import SAMPLE_RATE, AudioError, load_audio, prepare_waveform, require_torchaudio
from .mfcc_kmeans import MfccKMeansExtractor, MfccSettings
from .mhubert import MHubertExtractor, load_centroids
from .prompt import MARKER, SPECIAL, SPEECH, TEXT, Prompt, build_prompt
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
    "MARKER",
    "SPECIAL",
    "SPEECH",
    "TEXT",
    "Prompt",
    "SpokenUtterance",
    "build_prompt",
    "utterance_units",
    "SAMPLE_RATE",
    "AlignmentError",
    "AudioError",
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
