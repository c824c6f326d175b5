"""Lenses over the L+1 residual streams: unembedding, lenses (one registry), runs, metrics, phases.

A new lens subclasses :class:`~speech_interp.lens.lenses.Lens` and is added to
:data:`~speech_interp.lens.lenses.LENSES`; the Python API and the CLI both read that registry.
"""

from speech_interp.lens.lenses import LENSES, Lens, LogitLens, TunedLens, as_lens, kl_to_final
from speech_interp.lens.metrics import (
    LENS_COLUMNS,
    RANK_COLUMNS,
    excess_over_control,
    rank_column,
    summarize,
)
from speech_interp.lens.phases import phase_bands
from speech_interp.lens.run import LensResult, lens_top_tokens, run_lens
from speech_interp.lens.unembed import Scores, Unembedding, causal_lm, score_hidden

__all__ = [
    "LENSES",
    "LENS_COLUMNS",
    "Lens",
    "LensResult",
    "LogitLens",
    "RANK_COLUMNS",
    "Scores",
    "TunedLens",
    "Unembedding",
    "as_lens",
    "causal_lm",
    "excess_over_control",
    "kl_to_final",
    "lens_top_tokens",
    "phase_bands",
    "rank_column",
    "run_lens",
    "score_hidden",
    "summarize",
]
