"""Held-out evaluation sentences, fixed by the seed before training and excluded from it.

General sentences (anything but a lone fact clause) are drawn with ``EVAL_SEED + 1000``, the
same for every training seed (so seeds are compared on one held-out set); training never samples
them. Lone fact clauses are probes of trained knowledge, so every fact of
:mod:`world` is in the evaluation set and in training (text-only for the text-only entities).
"""

from __future__ import annotations

import numpy as np

from .grammar import Sentence, sample_sentence, sentence_of
from .world import V2, World

EVAL_SEED = 0


def eval_sentences(n: int, seed: int = EVAL_SEED, world: World = V2) -> list[Sentence]:
    """``n`` distinct held-out general sentences of ``world``, then every fact as a lone
    clause."""
    rng = np.random.default_rng(seed + 1000)
    seen: set[str] = set()
    out: list[Sentence] = []
    while len(out) < n:
        sentence = sample_sentence(rng, world=world)
        text = " ".join(sentence.words)
        if sentence.kind != "fact" and text not in seen:
            seen.add(text)
            out.append(sentence)
    facts = [
        sentence_of(world, "fact", words, ((e, r.name),))
        for e, r, words in world.all_fact_clauses()
    ]
    return out + facts


def lens_fit_sentences(
    world: World, analysed: set[tuple[str, ...]], n_fit: int, n_val: int, seed: int
) -> tuple[list[list[str]], list[list[str]]]:
    """(fit, validation) sentences of ``world``'s grammar for a current-word lens fitted on
    written text: drawn with ``seed``, sentences equal to an analysed one left out."""
    rng = np.random.default_rng(seed)
    sentences: list[list[str]] = []
    while len(sentences) < n_fit + n_val:
        words = list(sample_sentence(rng, world=world).words)
        if tuple(words) not in analysed:
            sentences.append(words)
    return sentences[:n_fit], sentences[n_fit:]


def excluded_texts(n: int, seed: int = EVAL_SEED, world: World = V2) -> set[str]:
    """Texts training must not sample (the held-out general sentences)."""
    return {" ".join(s.words) for s in eval_sentences(n, seed, world) if s.kind != "fact"}
