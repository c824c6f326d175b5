"""Held-out evaluation sentences, fixed by the seed before training and excluded from it.

General-template and copy sentences are drawn with ``seed + 1000``; training never samples them.
Fact sentences are probes of trained knowledge, so all 40 are in the evaluation set and in
training (text-only for :data:`TEXT_ONLY_FACTS`, any modality for the others).
"""

from __future__ import annotations

import numpy as np

from .grammar import fact_sentence, sample_sentence
from .lexicon import FACT_ANIMALS


def eval_sentences(n: int, seed: int) -> list[tuple[str, list[str]]]:
    """(kind, words) for ``n`` distinct held-out non-fact sentences plus every fact."""
    rng = np.random.default_rng(seed + 1000)
    seen: set[str] = set()
    out: list[tuple[str, list[str]]] = []
    while len(out) < n:
        kind, words = sample_sentence(rng, p_fact=0.0, p_copy=0.25)
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            out.append((kind, words))
    return out + [("fact", fact_sentence(a)) for a in FACT_ANIMALS]


def excluded_texts(n: int, seed: int) -> set[str]:
    """Texts training must not sample (the held-out non-fact sentences)."""
    return {" ".join(w) for kind, w in eval_sentences(n, seed) if kind != "fact"}
