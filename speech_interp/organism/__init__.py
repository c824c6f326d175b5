"""The organism: a tiny interleaved speech-text LM trained offline, shipped with the package."""

from pathlib import Path

# Where the shipped weights, tokenizers, speech-unit table and evaluation data live.
ORGANISM_DIR = Path(__file__).parent / "weights"
# The shipped evaluation set (held-out sentences in training voices, split "eval").
SHIPPED_DATA = ORGANISM_DIR / "eval.jsonl"

# The shipped variants, defined once: ``full`` is the default of ``organism``; the others are the
# cells of the paper's knob grid (init x data) and the two controls (docs/organism.md).
VARIANTS: tuple[str, ...] = (
    "full", "no-interleave", "speech-only", "random-init", "random-separate",
    "random-speech-only", "planted", "decodable-only",
)  # fmt: skip
# Training seeds: every variant ships at seed 0 (its plain name); ``full`` and the two knob
# variants closest to it also ship at seeds 1 and 2, as ``organism:<variant>-seed<N>``.
SEEDED_VARIANTS: tuple[str, ...] = ("full", "random-init", "no-interleave")
EXTRA_SEEDS: tuple[int, ...] = (1, 2)


def shipped_name(variant: str, seed: int = 0) -> str:
    """The directory (and ``organism:`` name) of a variant trained at ``seed``."""
    return variant if seed == 0 else f"{variant}-seed{seed}"


# Every shipped model, in report order: each variant, then the extra seeds.
SHIPPED_MODELS: tuple[str, ...] = VARIANTS + tuple(
    shipped_name(v, s) for v in SEEDED_VARIANTS for s in EXTRA_SEEDS
)

__all__ = [
    "EXTRA_SEEDS", "ORGANISM_DIR", "SEEDED_VARIANTS", "SHIPPED_DATA", "SHIPPED_MODELS",
    "VARIANTS", "shipped_name",
]  # fmt: skip
