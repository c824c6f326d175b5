"""Model-side knowledge (installed as ``speech_interp.hooks``): layouts, module paths, adapters.

- ``spec``: :class:`FamilySpec` (a family's token layout as data) and :class:`TokenLayout` (bound
  to one tokenizer); one small module per family (``sims``, ``spiritlm``, ``speechgpt``,
  ``llama_mimi``, ``glm4voice``, ``organism``, ``generic``), registered in :data:`FAMILIES`,
  which ``detect_family`` searches.
- ``paths``: where blocks, attention, MLP, final norm, unembedding and embedding live per
  architecture, and :func:`submodule`, the one accessor.
- ``helium``: TransformerLens adapters for architectures TL lacks (entry point).
"""

from __future__ import annotations

from .generic import GENERIC, generic_spec
from .glm4voice import GLM4_VOICE
from .llama_mimi import LLAMA_MIMI
from .organism import ORGANISM, ORGANISM_UNITS
from .paths import ModulePaths, get_submodule, module_paths, submodule
from .sims import SIMS
from .spec import FamilySpec, SpecError, TokenLayout
from .speechgpt import SPEECHGPT
from .spiritlm import SPIRITLM, SPIRITLM_EXPRESSIVE
from .text import TEXT

FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        SIMS,
        SPIRITLM,
        SPIRITLM_EXPRESSIVE,
        SPEECHGPT,
        LLAMA_MIMI,
        GLM4_VOICE,
        ORGANISM,
        GENERIC,
        TEXT,
    )
}


def get_family(name: str) -> FamilySpec:
    """A registered family by name."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise SpecError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None


def detect_family(tokenizer) -> FamilySpec:
    """The registered family whose token layout best explains the tokenizer's vocabulary.

    Named families are tried first; the generic pattern only when none fits. A vocabulary with
    no speech tokens at all is an error.
    """
    vocab = tokenizer.get_vocab()
    named = [s for s in FAMILIES.values() if s.name != GENERIC.name]
    scored = sorted(((s.matches(vocab), s.name, s) for s in named), reverse=True)
    if scored and scored[0][0] > 0:
        return scored[0][2]
    if GENERIC.matches(vocab) > 0:
        return GENERIC
    speech = [f"{s.name}: {s.unit_pattern}" for s in FAMILIES.values() if not s.text_only]
    raise SpecError(
        f"the tokenizer has no speech-unit tokens of any known family ({', '.join(speech)}); "
        "this looks like a text-only model (load it with family='text' to read it on text). "
        "Pass family=generic_spec(pattern) if your units use another pattern."
    )


__all__ = [
    "FAMILIES",
    "FamilySpec",
    "GENERIC",
    "GLM4_VOICE",
    "LLAMA_MIMI",
    "ModulePaths",
    "ORGANISM",
    "ORGANISM_UNITS",
    "SIMS",
    "SPEECHGPT",
    "TEXT",
    "SPIRITLM",
    "SPIRITLM_EXPRESSIVE",
    "SpecError",
    "TokenLayout",
    "detect_family",
    "generic_spec",
    "get_family",
    "get_submodule",
    "module_paths",
    "submodule",
]
