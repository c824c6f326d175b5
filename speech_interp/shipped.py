"""Where the package's shipped artefacts live (import-free, so any layer may read it).

The organism's weights, tokenizers, speech-unit table and evaluation set are package data under
``speech_interp/organism/weights``; which variants ship is a family fact
(:mod:`speech_interp.hooks.organism`).
"""

import os
from pathlib import Path

# The shipped weights, one directory per variant, plus the tokenizers and the speech-unit table.
ORGANISM_DIR = Path(__file__).parent / "organism" / "weights"
# The shipped evaluation set (held-out sentences in training voices, split "eval").
SHIPPED_DATA = ORGANISM_DIR / "eval.jsonl"


def user_cache() -> Path:
    """Where built artefacts are cached (rows checkpoints merged on the base, downloaded k-means
    files): ``$SPEECH_INTERP_CACHE``, or ``~/.cache/speech_interp`` when it is unset or empty."""
    return Path(os.environ.get("SPEECH_INTERP_CACHE") or "~/.cache/speech_interp").expanduser()


__all__ = ["ORGANISM_DIR", "SHIPPED_DATA", "user_cache"]
