"""Which text token stands for a word, and which word is its matched control.

**Target token rule** (:class:`TargetResolver`), first rule that gives a *text* token wins:

0. an aligner's unknown-word label (``<unk>`` ...,
   :data:`speech_interp.speech.alignments.UNKNOWN_LABELS`) has no target: ``missing``.

1. ``single``: ``" " + word`` or ``word`` encodes to exactly one non-whitespace token
   (leading-space form first).
2. ``vocab``: a single text token spells the word case-insensitively, with or without a leading
   space (``" Cat"`` for "cat"); preference: leading space, then exact case, then lowest id.
3. ``first``: the first non-whitespace sub-token of ``" " + word``.
4. ``missing``: none of the above is a text token (the word tokenizes to nothing, to an unknown /
   special token, or to a speech unit or marker). Such words are reported, never dropped silently.

**Control rule** (:func:`draw_controls`): every word occurrence of the data set gets a control
word, drawn with one seeded RNG in data order, from a *pool* matched on category and frequency.
Candidates are the other word types of the data set (compared lower-case) whose target token
exists and differs from the word's own target; a type's frequency is its occurrence count in the
data set, compared in log count.

1. ``category``: the pool is the ``n_nearest`` candidates of the word's ``category`` whose
   frequency is nearest the word's own (ties at the cut kept).
2. ``frequency`` (no category, or no other member of it): the ``n_nearest`` candidates nearest in
   frequency, among candidates with the same ``content`` flag when there are any.
3. ``none``: no candidate at all (a data set with a single word type); the word has no control.

The control is a uniform draw from the pool. The whole pool is kept (:attr:`Control.pool`): the
*expected* control rate averages the hit over every pool member, free of the draw's noise.
Frequency matching per word makes frequent words' controls frequent too, so a target weighted
by occurrence is compared with controls of the same frequency profile.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.speech.alignments import UNKNOWN_LABELS


@dataclass(frozen=True)
class Target:
    """A word's target token: id (-1 when missing), its string and the rule that found it."""

    token_id: int
    token: str | None
    rule: str

    @property
    def found(self) -> bool:
        return self.token_id >= 0


MISSING = Target(-1, None, "missing")


class TargetResolver:
    """Map words to target tokens by the rule in the module docstring (cached per word)."""

    def __init__(self, tokenizer, layout: TokenLayout):
        self.tokenizer = tokenizer
        self.text_mask = layout.text_mask
        self._cache: dict[str, Target] = {}
        self._spelled: dict[str, list[tuple[str, bool, int]]] | None = None

    def _is_text(self, token_id: int) -> bool:
        return 0 <= token_id < self.text_mask.numel() and bool(self.text_mask[token_id])

    def _decode(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def _content_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without whitespace-only tokens."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        texts = self.tokenizer.batch_decode([[i] for i in ids]) if ids else []
        return [i for i, t in zip(ids, texts, strict=True) if t.strip()]

    def _spelling_index(self) -> dict[str, list[tuple[str, bool, int]]]:
        """Lower-case spelling -> [(spelling, has_leading_space, id)] over all text tokens."""
        if self._spelled is None:
            ids = self.text_mask.nonzero().flatten().tolist()
            texts = self.tokenizer.batch_decode([[i] for i in ids])
            raws = self.tokenizer.convert_ids_to_tokens(ids)
            index: dict[str, list[tuple[str, bool, int]]] = defaultdict(list)
            for i, text, raw in zip(ids, texts, raws, strict=True):
                bare = text.strip()
                if bare:
                    spaced = text.startswith(" ") or str(raw).startswith(("Ġ", "▁"))
                    index[bare.lower()].append((bare, spaced, i))
            self._spelled = dict(index)
        return self._spelled

    def __call__(self, word: str) -> Target:
        if word not in self._cache:
            self._cache[word] = self._resolve(word)
        return self._cache[word]

    def _resolve(self, word: str) -> Target:
        if word in UNKNOWN_LABELS:
            return MISSING
        for text in (" " + word, word):
            ids = self._content_ids(text)
            if len(ids) == 1 and self._is_text(ids[0]):
                return Target(ids[0], self._decode(ids[0]), "single")
        bare = word.strip()
        matches = self._spelling_index().get(bare.lower(), [])
        if matches:
            _, _, best = min((not spaced, spelled != bare, i) for spelled, spaced, i in matches)
            return Target(best, self._decode(best), "vocab")
        ids = self._content_ids(" " + word)
        if ids and self._is_text(ids[0]):
            return Target(ids[0], self._decode(ids[0]), "first")
        return MISSING


@dataclass(frozen=True)
class Control:
    """The matched control word of one word occurrence (``word`` None when rule is ``none``),
    drawn from ``pool``: the matched candidates (word, target) it was drawn from."""

    word: str | None
    target: Target
    rule: str
    pool: tuple[tuple[str, Target], ...] = ()


def draw_controls(
    utterances: Sequence[Utterance],
    resolver: TargetResolver,
    *,
    seed: int = 0,
    n_nearest: int = 5,
) -> list[list[Control]]:
    """A control for every word occurrence (``[utterance][word]``), by the module's rule."""
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    content: dict[str, bool] = {}
    by_category: dict[str, set[str]] = defaultdict(set)
    for utt in utterances:
        for w in utt.words:
            key = w.word.lower()
            counts[key] += 1
            spelling.setdefault(key, w.word)
            content.setdefault(key, w.content)
            if w.category is not None:
                by_category[w.category].add(key)
    types = sorted(counts)
    target = {t: resolver(spelling[t]) for t in types}
    rng = np.random.default_rng(seed)

    def candidates(key: str, pool) -> list[str]:
        own = target[key].token_id
        return sorted(t for t in pool if t != key and target[t].found and target[t].token_id != own)

    pools: dict[tuple[str, str | None], tuple[str, list[str]]] = {}
    controls: list[list[Control]] = []
    for utt in utterances:
        row = []
        for w in utt.words:
            key = w.word.lower()
            if (key, w.category) not in pools:
                pool = candidates(key, by_category.get(w.category, ())) if w.category else []
                rule = "category"
                if not pool:
                    rule = "frequency"
                    pool = candidates(key, types)
                    same = [t for t in pool if content[t] == content[key]]
                    pool = same or pool
                pools[key, w.category] = (rule, _nearest_in_frequency(key, pool, counts, n_nearest))
            rule, pool = pools[key, w.category]
            if not pool:
                row.append(Control(None, MISSING, "none"))
                continue
            pick = pool[int(rng.integers(len(pool)))]
            members = tuple((spelling[t], target[t]) for t in pool)
            row.append(Control(spelling[pick], target[pick], rule, members))
        controls.append(row)
    return controls


def _nearest_in_frequency(key, pool, counts, n_nearest) -> list[str]:
    if not pool:
        return []
    dist = {t: abs(math.log(counts[t]) - math.log(counts[key])) for t in pool}
    ordered = sorted(pool, key=lambda t: (dist[t], t))
    cut = dist[ordered[min(n_nearest, len(ordered)) - 1]]
    return [t for t in ordered if dist[t] <= cut]


__all__ = ["Control", "MISSING", "Target", "TargetResolver", "draw_controls"]
