"""speech-interp: is the implicit text stage of interleaved speech-text LMs load-bearing?

Load a model into TransformerLens or nnsight with :func:`load`; build prompts with exact per-word
positions with :func:`speech_interp.data.build_prompt`; read the residual stream of every layer
under the same names on both backends with :func:`get_residuals`; run the lens
(:func:`run_lens`) and the causal tests (:func:`patch_sweep`, :func:`attribution_sweep`,
:func:`ablate`, :func:`substitute`, :func:`verdicts`) on utterances (:func:`read_utterances`,
:func:`make_pairs`).

The names below are imported on first use (PEP 562), so that ``import speech_interp`` and the
command line's ``--help`` do not pay for torch, TransformerLens and nnsight up front.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "speech_interp.hooks": (
        "FAMILIES",
        "FamilySpec",
        "SpecError",
        "TokenLayout",
        "detect_family",
        "generic_spec",
    ),
    "speech_interp.models": (
        "Loaded",
        "backend_of",
        "hf_model",
        "layout_for",
        "load",
    ),
    "speech_interp.core.residuals": (
        "get_residuals",
        "n_layers",
        "resid_names",
        "residual_stack",
        "residual_stacks",
    ),
    "speech_interp.lens": (
        "LensResult",
        "LogitLens",
        "TunedLens",
        "excess_over_control",
        "phase_bands",
        "run_lens",
    ),
    "speech_interp.causal": (
        "ablate",
        "ablate_bands",
        "attribution_sweep",
        "patch_sweep",
        "rank_agreement",
        "substitute",
        "verdicts",
    ),
    "speech_interp.data": (
        "make_pairs",
        "read_utterances",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *sorted(_MODULE_OF)]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'speech_interp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs; tests check it names exactly _EXPORTS
    from speech_interp.causal import (
        ablate,
        ablate_bands,
        attribution_sweep,
        patch_sweep,
        rank_agreement,
        substitute,
        verdicts,
    )
    from speech_interp.core.residuals import (
        get_residuals,
        n_layers,
        resid_names,
        residual_stack,
        residual_stacks,
    )
    from speech_interp.data import (
        make_pairs,
        read_utterances,
    )
    from speech_interp.hooks import (
        FAMILIES,
        FamilySpec,
        SpecError,
        TokenLayout,
        detect_family,
        generic_spec,
    )
    from speech_interp.lens import (
        LensResult,
        LogitLens,
        TunedLens,
        excess_over_control,
        phase_bands,
        run_lens,
    )
    from speech_interp.models import (
        Loaded,
        backend_of,
        hf_model,
        layout_for,
        load,
    )
