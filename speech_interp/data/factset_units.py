"""Fact-set audio -> units -> utterances in the ``--data`` format, cached.

**Rule.** Every rendering of every fact (:mod:`speech_interp.data.factset`) becomes one
utterance: its timed prompt words, all spoken, each with the units the loaded family's
extractor gives the whole prompt and the family's word rule assigns it
(:func:`speech_interp.speech.utterance.utterance_units`; SIMS: a unit belongs to a word by its
end time, as slamkit). A word is a *content* word unless it is in scikit-learn's English
stop-word list (the fact set ships no content flags). The fact's category, correct and
counterfactual completions and the rendering name go in the utterance's meta; where the set
has completion audio, so do the units of the prompt's and each completion's audio concatenated
and encoded together (``speech_<completion>_units``), as slamkit encodes speech -> speech. A
rendering in which some word gets no unit (a word shorter than a unit frame) is not scored: it
is listed in the returned ``skipped`` frame with the word, never dropped silently.

**Cache.** The utterances are written to ``<cache>/factset/<key>.jsonl``, the key a hash of the
rows' prompts and audio and of the extractor's id, so a second run reads them back and needs no
audio model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from speech_interp.data.factset import FactItem
from speech_interp.data.utterances import Utterance, Word, read_utterances, write_utterances
from speech_interp.speech.units import UnitExtractor, extract_units
from speech_interp.speech.utterance import utterance_units

SKIPPED_COLUMNS = ["item", "rendering", "word", "reason"]


def is_content(word: str) -> bool:
    """Not an English stop word (scikit-learn's list), case and punctuation aside."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return word.strip(".,;:!?\"'").lower() not in ENGLISH_STOP_WORDS


def fact_meta(item: FactItem, rendering: str) -> dict:
    """What an utterance of a fact carries besides its words."""
    return {
        "kind": "fact",
        "item": item.id,
        "category": item.category,
        "rendering": rendering,
        "prompt": item.prompt,
        "correct": item.correct,
        "counterfactual": item.counterfactual,
    }


def factset_utterances(
    items: Sequence[FactItem],
    extractor: UnitExtractor,
    *,
    rule: str = "midpoint",
    dedup: bool = True,
) -> tuple[list[Utterance], pd.DataFrame]:
    """One utterance per (fact, rendering) (rule in the module docstring) and the skipped ones."""
    utterances, skipped = [], []
    for item in items:
        for r in item.renderings:
            spoken = utterance_units(r.wave, list(r.words), extractor, dedup=dedup, rule=rule)
            empty = [w for w, u in zip(spoken.words, spoken.word_units, strict=True) if not u]
            if empty:
                skipped += [(item.id, r.name, w, "no unit falls in the word") for w in empty]
                continue
            words = tuple(
                Word(w, "speech", tuple(u), None, is_content(w))
                for w, u in zip(spoken.words, spoken.word_units, strict=True)
            )
            meta = fact_meta(item, r.name)
            for c, wave in item.completion_audio.items():  # slamkit: S -> S encoded together
                units = extract_units(extractor, torch.cat([r.wave, wave]), dedup=dedup)
                meta[f"speech_{c}_units"] = units.units.tolist()
            utterances.append(Utterance(f"{item.id}/{r.name}", words, voice=r.name, meta=meta))
    return utterances, pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)


def cache_key(items: Sequence[FactItem], extractor_id: str, rule: str, dedup: bool) -> str:
    """Hash of the facts' texts and audio and of the extractor (module docstring)."""
    h = hashlib.sha256(f"{extractor_id}|{rule}|{dedup}".encode())
    for item in items:
        h.update(f"{item.id}|{item.category}|{item.prompt}|{item.correct}|".encode())
        h.update(item.counterfactual.encode())
        for c, wave in sorted(item.completion_audio.items()):
            h.update(c.encode())
            h.update(wave.numpy().tobytes())
        for r in item.renderings:
            h.update(r.name.encode())
            h.update(r.wave.numpy().tobytes())
            h.update(repr([(w.word, w.start, w.end) for w in r.words]).encode())
    return h.hexdigest()[:16]


def cached_factset_utterances(
    items: Sequence[FactItem],
    extractor_factory,
    extractor_id: str,
    cache_dir: Path,
    *,
    family: str | None = None,
    rule: str = "midpoint",
    dedup: bool = True,
) -> tuple[list[Utterance], pd.DataFrame, Path, bool]:
    """:func:`factset_utterances` through the cache: (utterances, skipped, file, from_cache).
    ``extractor_factory()`` is called only on a cache miss (no audio model otherwise)."""
    key = cache_key(items, extractor_id, rule, dedup)
    path = Path(cache_dir) / "factset" / f"{key}.jsonl"
    skipped_path = path.with_suffix(".skipped.csv")
    if path.exists() and skipped_path.exists():
        _, utterances = read_utterances(path)
        return utterances, pd.read_csv(skipped_path), path, True
    extractor = extractor_factory()
    utterances, skipped = factset_utterances(items, extractor, rule=rule, dedup=dedup)
    if not utterances:
        raise ValueError(f"no fact rendering could be scored: {skipped.to_dict(orient='records')}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_utterances(path, utterances, family=family, n_units=extractor.n_units)
    skipped.to_csv(skipped_path, index=False)
    return utterances, skipped, path, False


__all__ = [
    "cache_key",
    "cached_factset_utterances",
    "fact_meta",
    "factset_utterances",
    "is_content",
]
