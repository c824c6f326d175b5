"""Lenses over the L+1 residual streams: unembedding, lenses (one registry), runs, metrics, phases.

A new lens subclasses :class:`~speech_interp.lens.lenses.Lens` and is added to
:data:`~speech_interp.lens.registry.LENSES`; the Python API and the CLI both read that registry
(the CLI builds lenses with :func:`~speech_interp.lens.registry.build_lens`).
"""

from speech_interp.lens.lenses import Lens, LogitLens
from speech_interp.lens.metrics import (
    LENS_COLUMNS,
    LENS_CSV,
    RANK_COLUMNS,
    excess_over_control,
    rank_column,
    summarize,
)
from speech_interp.lens.phases import phase_bands
from speech_interp.lens.quality import kl_to_final
from speech_interp.lens.registry import LENSES, as_lens, build_lens
from speech_interp.lens.run import LensResult, lens_top_tokens, run_lens
from speech_interp.lens.tuned import TunedLens
from speech_interp.lens.unembed import Scores, Unembedding, causal_lm, score_hidden

__all__ = [
    "LENSES",
    "LENS_COLUMNS",
    "LENS_CSV",
    "Lens",
    "LensResult",
    "LogitLens",
    "RANK_COLUMNS",
    "Scores",
    "TunedLens",
    "Unembedding",
    "as_lens",
    "build_lens",
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
