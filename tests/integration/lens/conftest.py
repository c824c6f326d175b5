"""Shared by the lens tests: a small SIMS data set with text and spoken words, its logit-lens
run on the TL backend, and an independent full-vocabulary reference."""

import random

import pytest
import torch

from speech_interp.data import Utterance, Word
from speech_interp.lens import run_lens

CATEGORIES = {
    "det": (["the", "a"], False),
    "noun": (["cat", "dog", "bird", "fish", "house", "park", "river", "tree", "garden"], True),
    "verb": (["lives", "sees", "eats"], True),
    "adj": (["red", "blue", "big", "small", "happy", "old", "young"], True),
    "prep": (["in", "on", "under", "near"], False),
}
TEMPLATE = ["det", "adj", "noun", "verb", "prep", "det", "noun"]


def _utterances(n: int, seed: int, text_every: int = 3) -> list[Utterance]:
    rng = random.Random(seed)
    utts = []
    for i in range(n):
        words = []
        for j, cat in enumerate(TEMPLATE):
            vocab, content = CATEGORIES[cat]
            text = (i + j) % text_every == 0 and j > 0
            units = None if text else tuple(rng.randrange(500) for _ in range(rng.randint(1, 4)))
            words.append(Word(rng.choice(vocab), "text" if text else "speech", units, cat, content))
        utts.append(Utterance(f"u{i}", tuple(words)))
    return utts


@pytest.fixture(scope="module")
def make_utterances():
    """``make_utterances(n, seed, text_every=3)``: n template utterances, every
    ``text_every``-th word (after the first) written as text."""
    return _utterances


@pytest.fixture(scope="module")
def data():
    return _utterances(6, seed=1)


@pytest.fixture(scope="module")
def tl_result(models, data):
    return run_lens(models["tl"], models["layout"], data, progress=False, n_boot=200)


def _hand_logits(hf, ids):
    """Independent reference: HF hidden states -> final norm -> lm_head, full vocabulary."""
    with torch.no_grad():
        out = hf(ids[None], output_hidden_states=True)
        hs = out.hidden_states  # L+1; the last one is already normed by HF
        L = len(hs) - 1
        logits = [hf.lm_head(hf.model.norm(hs[i]))[0] for i in range(L)]
    return torch.stack([*logits, out.logits[0]])


@pytest.fixture(scope="module")
def hand_logits():
    """``hand_logits(hf, ids)``: the [L+1, pos, vocab] full-vocabulary reference."""
    return _hand_logits
