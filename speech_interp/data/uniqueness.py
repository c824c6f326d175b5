"""Uniqueness points: the first unit at which a spoken word can be told apart from every other word.

**Rule** (:func:`uniqueness_points`). The lexicon is every spoken occurrence of the data set:
each word type (compared lower-case) with every (deduplicated) unit sequence it is spoken with.
For one occurrence with units ``u[0..n-1]``, its uniqueness point is the smallest index ``i``
such that no unit sequence of any *other* word type starts with ``u[0..i]`` (other occurrences
of the same type never compete). A word whose whole sequence is also the start of another word
type's sequence is never unique: it takes its last unit, ``i = n - 1``, and ``unique`` is False.

Before the uniqueness point the units heard so far fit more than one word, so a lens hit there
can come from context (prediction), not from the sound; the ``after_uniqueness`` position rule
of :mod:`speech_interp.lens.metrics` reads only positions at or after it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from speech_interp.data.utterances import Utterance


@dataclass(frozen=True)
class UniquenessPoint:
    """Index (into the word's units) of its uniqueness point and whether it is ever unique."""

    index: int
    unique: bool


def uniqueness_points(utterances: Sequence[Utterance]) -> list[list[UniquenessPoint | None]]:
    """Per utterance and word: the word's :class:`UniquenessPoint` (None for text words)."""
    owners: dict[tuple[int, ...], set[str]] = defaultdict(set)  # unit prefix -> word types
    for utt in utterances:
        for w in utt.words:
            if w.modality == "speech":
                for n in range(1, len(w.units) + 1):
                    owners[w.units[:n]].add(w.word.lower())
    out: list[list[UniquenessPoint | None]] = []
    for utt in utterances:
        row: list[UniquenessPoint | None] = []
        for w in utt.words:
            if w.modality != "speech":
                row.append(None)
                continue
            key = w.word.lower()
            point = UniquenessPoint(len(w.units) - 1, False)
            for i in range(len(w.units)):
                if owners[w.units[: i + 1]] <= {key}:
                    point = UniquenessPoint(i, True)
                    break
            row.append(point)
        out.append(row)
    return out


__all__ = ["UniquenessPoint", "uniqueness_points"]
