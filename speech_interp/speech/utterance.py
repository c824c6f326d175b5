"""Audio + word alignment -> per-word unit lists, ready for :func:`build_prompt`.

Units are extracted over the whole utterance (so dedup never merges across a word boundary
differently from the model's training data), then split by :func:`word_unit_spans`. Units that
fall outside every word (silences) are kept as *gap units*: ``gaps[i]`` precedes word ``i`` and
``gaps[-1]`` follows the last word; pass them to ``build_prompt(..., gaps=...)`` to reproduce the
full unit stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

from .alignments import WordSpan, word_unit_spans
from .audio import SAMPLE_RATE
from .units import UnitExtractor, UnitSequence, extract_units


@dataclass(frozen=True)
class SpokenUtterance:
    """Words of one utterance with their unit ids, gap units and the timed unit stream."""

    words: tuple[str, ...]
    word_units: tuple[tuple[int, ...], ...]
    gaps: tuple[tuple[int, ...], ...]
    units: UnitSequence

    @property
    def word_unit_frames(self) -> tuple[tuple[int, ...], ...]:
        """Per word, the frame index (at the extractor's rate) where each of its units starts."""
        frames = (self.units.starts * self.units.frame_rate).round().long().tolist()
        out, cursor = [], 0
        for gap, word in zip(self.gaps, self.word_units, strict=False):
            cursor += len(gap)
            out.append(tuple(frames[cursor : cursor + len(word)]))
            cursor += len(word)
        return tuple(out)


def utterance_units(
    wave: Float[Tensor, " samples"],
    alignment: list[WordSpan],
    extractor: UnitExtractor,
    *,
    dedup: bool = True,
    rule: str = "midpoint",
) -> SpokenUtterance:
    """Extract units from 16 kHz mono audio and assign them to the aligned words.

    ``rule`` says which word a unit belongs to (:func:`word_unit_spans`); pass the model
    family's own, ``layout.spec.unit_word_rule`` (``"end"`` for SIMS, as slamkit).
    """
    units = extract_units(extractor, wave, dedup=dedup)
    spans = word_unit_spans(alignment, units, duration=wave.numel() / SAMPLE_RATE, rule=rule)
    ids = units.units.tolist()
    gaps, cursor = [], 0
    for start, end in spans:
        gaps.append(tuple(ids[cursor:start]))
        cursor = end
    gaps.append(tuple(ids[cursor:]))
    return SpokenUtterance(
        words=tuple(w.word for w in alignment),
        word_units=tuple(tuple(ids[s:e]) for s, e in spans),
        gaps=tuple(gaps),
        units=units,
    )
