"""The organism: a tiny interleaved speech-text LM trained offline, shipped with the package."""

from pathlib import Path

# Where the shipped weights, tokenizers, speech-unit table and evaluation data live.
ORGANISM_DIR = Path(__file__).parent / "weights"
# The shipped evaluation set (held-out sentences in training voices, split "eval").
SHIPPED_DATA = ORGANISM_DIR / "eval.jsonl"

# The shipped variants, defined once: ``full`` is the default of ``organism``; the others are its
# ablations and controls (recipe and card in docs/organism.md).
VARIANTS: tuple[str, ...] = ("full", "no-interleave", "random-init", "planted", "decodable-only")

__all__ = ["ORGANISM_DIR", "SHIPPED_DATA", "VARIANTS"]
