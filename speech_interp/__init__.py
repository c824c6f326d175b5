"""speech-interp: is the implicit text stage of interleaved speech-text LMs load-bearing?

Load a model into TransformerLens or nnsight with :func:`load`; build prompts with exact per-word
positions with :func:`speech_interp.speech.build_prompt`; read the residual stream of every layer
under the same names on both backends with :func:`get_residuals`.
"""

from speech_interp.hooks import (
    FAMILIES,
    FamilySpec,
    SpecError,
    TokenLayout,
    detect_family,
    generic_spec,
)
from speech_interp.lens import LensResult, excess_over_control, phase_bands, run_lens
from speech_interp.lenses import LogitLens, TunedLens
from speech_interp.models import Loaded, backend_of, hf_model, layout_for, load
from speech_interp.residuals import get_residuals, n_layers, resid_names, residual_stack

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "FamilySpec",
    "LensResult",
    "Loaded",
    "LogitLens",
    "TunedLens",
    "SpecError",
    "TokenLayout",
    "__version__",
    "backend_of",
    "detect_family",
    "excess_over_control",
    "generic_spec",
    "get_residuals",
    "hf_model",
    "layout_for",
    "load",
    "n_layers",
    "phase_bands",
    "resid_names",
    "residual_stack",
    "run_lens",
]
