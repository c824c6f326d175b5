"""Clean / corrupted utterance pairs that differ in exactly one spoken word, and their alignment.

**Pair rule** (:func:`make_pairs`): a *slot* is a spoken content word that has a next word in its
utterance (the causal metrics read that next word). The corrupted utterance swaps the slot's word
for another spoken content word of the data set (a different word, compared lower-case) that was
spoken **in the same voice** (``Utterance.voice``; ``None`` only matches ``None``) and, with
``same_category=True``, has the same ``category`` (words without a category are then never
swapped). The swapped-in word brings its own units, taken from the utterance it was spoken in, so
the corrupted utterance is real speech of that voice. Slots are visited in a seeded random order,
each slot's donor is a seeded uniform draw over its candidates, and the first ``max_pairs`` slots
that have a candidate become pairs.

**Position alignment** (:func:`align`): the two words may have different unit counts, so the two
prompts' positions are aligned in three regions:

- ``before`` the word: identical tokens at identical positions (offset = position - first
  position of the word, negative). Causal attention makes their activations equal in both runs,
  so they are never patched.
- ``word``: aligned from the word's **end**: offset -1 is the last unit of both words, -2 the one
  before, and so on. Offsets that only the longer word has have no partner and are skipped.
- ``after`` the word: identical tokens shifted by the length difference; offset +1 is the first
  token after the word, +2 the next, and so on.

The ``position`` column of ``patch.csv`` is this offset (negative inside the word, positive after
it, never 0).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from speech_interp.data.prompt import Prompt
from speech_interp.data.utterances import Utterance, Word


class PairError(ValueError):
    """Two utterances do not form a valid clean / corrupted pair."""


@dataclass(frozen=True)
class Pair:
    """A clean utterance, its corrupted copy and which word differs (same index in both)."""

    id: str
    clean: Utterance
    corrupt: Utterance
    word_index: int
    donor: str | None = None  # utterance the swapped-in word (and its units) came from
    donor_word_index: int | None = None
    donor_next: Word | None = None  # the word after the swapped-in word in its own utterance

    @property
    def clean_word(self) -> Word:
        return self.clean.words[self.word_index]

    @property
    def corrupt_word(self) -> Word:
        return self.corrupt.words[self.word_index]


def _same(a: Word, b: Word) -> bool:
    return (a.word, a.modality, a.units) == (b.word, b.modality, b.units)


def validate_pair(clean: Utterance, corrupt: Utterance) -> int:
    """The index of the one word that differs; :class:`PairError` unless there is exactly one.

    Both utterances need the same number of words; the differing word must be spoken in both and
    be a different word (case-insensitive); every other word must be equal (text, modality, units).
    """
    if len(clean.words) != len(corrupt.words):
        raise PairError(
            f"pair {clean.id!r} / {corrupt.id!r}: {len(clean.words)} vs {len(corrupt.words)} "
            "words; a pair must have the same words except exactly one spoken word"
        )
    diff = [
        i
        for i, (a, b) in enumerate(zip(clean.words, corrupt.words, strict=True))
        if not _same(a, b)
    ]
    if len(diff) != 1:
        raise PairError(
            f"pair {clean.id!r} / {corrupt.id!r} differs in {len(diff)} words "
            f"(indices {diff}); a pair must differ in exactly one spoken word"
        )
    i = diff[0]
    a, b = clean.words[i], corrupt.words[i]
    if a.modality != "speech" or b.modality != "speech":
        raise PairError(
            f"pair {clean.id!r}: word {i} ({a.word!r} -> {b.word!r}) must be spoken in both "
            f"utterances (modalities {a.modality!r}, {b.modality!r})"
        )
    if a.word.lower() == b.word.lower():
        raise PairError(
            f"pair {clean.id!r}: word {i} is {a.word!r} in both utterances (only its units "
            "differ); the corrupted word must be a different word"
        )
    return i


def make_pairs(
    utterances: Sequence[Utterance],
    *,
    seed: int = 0,
    max_pairs: int | None = None,
    same_category: bool = True,
) -> list[Pair]:
    """Corrupted copies of ``utterances`` that swap one spoken word (rule in the module doc)."""
    utterances = list(utterances)
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1 (or None for all), got {max_pairs}")
    donors: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    slots: list[tuple[int, int]] = []
    for u, utt in enumerate(utterances):
        for w, word in enumerate(utt.words):
            if word.modality != "speech" or not word.content:
                continue
            if same_category and word.category is None:
                continue
            donors[_pool_key(utt, word, same_category)].append((u, w))
            if w + 1 < len(utt.words):
                slots.append((u, w))
    rng = np.random.default_rng(seed)
    pairs: list[Pair] = []
    for j in rng.permutation(len(slots)):
        u, w = slots[int(j)]
        utt = utterances[u]
        word = utt.words[w]
        pool = [
            (du, dw)
            for du, dw in donors[_pool_key(utt, word, same_category)]
            if utterances[du].words[dw].word.lower() != word.word.lower()
        ]
        if not pool:
            continue
        du, dw = pool[int(rng.integers(len(pool)))]
        donor_word = utterances[du].words[dw]
        swapped = Word(donor_word.word, "speech", donor_word.units, word.category, word.content)
        words = utt.words[:w] + (swapped,) + utt.words[w + 1 :]
        corrupt = replace(utt, id=f"{utt.id}~{w}:{donor_word.word}", words=words)
        pair_id = f"{utt.id}:{w}:{word.word}->{donor_word.word}@{utterances[du].id}:{dw}"
        donor_words = utterances[du].words
        donor_next = donor_words[dw + 1] if dw + 1 < len(donor_words) else None
        pairs.append(Pair(pair_id, utt, corrupt, w, utterances[du].id, dw, donor_next))
        if max_pairs is not None and len(pairs) >= max_pairs:
            break
    if not pairs:
        rule = "same voice and category" if same_category else "same voice"
        raise PairError(
            f"no pair could be made from {len(utterances)} utterances: no spoken content word "
            f"with a next word has another word of the {rule} to swap in"
        )
    return pairs


def _pool_key(utt: Utterance, word: Word, same_category: bool) -> tuple:
    return (utt.voice, word.category if same_category else None)


# --------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class Alignment:
    """Aligned positions of a pair's prompts (rule in the module docstring)."""

    table: pd.DataFrame  # region, offset, clean_position, corrupt_position
    clean_last: int  # last position of the differing word in the clean prompt
    corrupt_last: int

    def cells(self, max_after: int | None = None) -> pd.DataFrame:
        """The patchable rows: the word's aligned positions and up to ``max_after`` after it."""
        t = self.table
        keep = (t["region"] == "word") | (t["region"] == "after")
        if max_after is not None:
            keep &= (t["region"] == "word") | (t["offset"] <= max_after)
        return t[keep].reset_index(drop=True)


def align(clean: Prompt, corrupt: Prompt, word_index: int) -> Alignment:
    """Align two prompts that differ in word ``word_index`` only (see the module docstring)."""
    cpos, rpos = clean.word_positions[word_index], corrupt.word_positions[word_index]
    if cpos.numel() == 0 or rpos.numel() == 0:
        raise PairError(f"word {word_index} has no positions in one of the prompts")
    c_first, c_last = int(cpos[0]), int(cpos[-1])
    r_first, r_last = int(rpos[0]), int(rpos[-1])
    n_after_c, n_after_r = len(clean) - c_last - 1, len(corrupt) - r_last - 1
    if c_first != r_first or n_after_c != n_after_r:
        raise PairError(
            "the prompts differ outside the swapped word (positions before it or the number "
            "after it do not match); build both with the same layout and tokenizer"
        )
    if (
        not (clean.input_ids[:c_first] == corrupt.input_ids[:r_first]).all()
        or not (clean.input_ids[c_last + 1 :] == corrupt.input_ids[r_last + 1 :]).all()
    ):
        raise PairError("the prompts' tokens differ outside the swapped word")
    rows = [("before", p - c_first, p, p) for p in range(c_first)]
    n_word = min(cpos.numel(), rpos.numel())
    rows += [("word", -k, c_last - k + 1, r_last - k + 1) for k in range(n_word, 0, -1)]
    rows += [("after", k, c_last + k, r_last + k) for k in range(1, n_after_c + 1)]
    table = pd.DataFrame(rows, columns=["region", "offset", "clean_position", "corrupt_position"])
    return Alignment(table, c_last, r_last)


__all__ = ["Alignment", "Pair", "PairError", "align", "make_pairs", "validate_pair"]
