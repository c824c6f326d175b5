"""Model-side knowledge of speech-text LM families: token layouts, module paths, TL adapters.

One small module per family; :data:`FAMILIES` is the registry ``detect_family`` searches.
"""

from __future__ import annotations

from .generic import GENERIC, generic_spec
from .modules import ModulePaths, get_submodule, hf_blocks, module_paths
from .organism import ORGANISM
from .sims import SIMS
from .spec import FamilySpec, SpecError, TokenLayout
from .spiritlm import SPIRITLM, SPIRITLM_EXPRESSIVE

FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec for spec in (SIMS, SPIRITLM, SPIRITLM_EXPRESSIVE, ORGANISM, GENERIC)
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
    raise SpecError(
        "the tokenizer has no speech-unit tokens of any known family "
        f"({', '.join(f'{s.name}: {s.unit_pattern}' for s in FAMILIES.values())}); "
        "this looks like a text-only model. Pass family=generic_spec(pattern) if your "
        "units use another pattern."
    )


__all__ = [
    "FAMILIES",
    "FamilySpec",
    "GENERIC",
    "ModulePaths",
    "ORGANISM",
    "SIMS",
    "SPIRITLM",
    "SPIRITLM_EXPRESSIVE",
    "SpecError",
    "TokenLayout",
    "detect_family",
    "generic_spec",
    "get_family",
    "get_submodule",
    "hf_blocks",
    "module_paths",
]
