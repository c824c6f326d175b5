"""The organism: a tiny interleaved speech-text LM trained offline, shipped with the package.

Its variants and seeds are family facts (:mod:`speech_interp.hooks.organism`) and the weights'
location is :mod:`speech_interp.shipped`; both are re-exported here.
"""

from speech_interp.hooks.organism import (
    EXTRA_SEEDS,
    SEEDED_VARIANTS,
    SHIPPED_MODELS,
    VARIANTS,
    shipped_name,
)
from speech_interp.shipped import ORGANISM_DIR, SHIPPED_DATA

__all__ = [
    "EXTRA_SEEDS", "ORGANISM_DIR", "SEEDED_VARIANTS", "SHIPPED_DATA", "SHIPPED_MODELS",
    "VARIANTS", "shipped_name",
]  # fmt: skip
