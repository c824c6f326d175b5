"""What every causal test reads out: the next word after a spoken word, in speech or in text.

**Kinds** (:data:`KINDS`), for a prompt ``prefix`` that ends with the word's last unit and the
word ``nxt`` that follows it:

- ``speech``: ``prefix`` + ``nxt``'s units; the metric is the sum of the log-probs of those units,
  each given everything before it. Needs a spoken next word.
- ``text``: ``prefix`` + the text marker (a switch to text); the metric is the log-prob of
  ``nxt``'s text target token (rule in :mod:`speech_interp.data.targets`) at the marker. Needs a
  text marker in the family and a target for the word.

A word without what a kind needs is skipped for that kind, with the reason :func:`why_not` gives;
the callers list skipped words, they never drop them silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from speech_interp.core.edits import Readout
from speech_interp.data.targets import TargetResolver
from speech_interp.data.utterances import Utterance, Word
from speech_interp.hooks import TokenLayout

KINDS: tuple[str, ...] = ("speech", "text")


def check_kinds(kinds: Sequence[str]) -> list[str]:
    """The kinds as a list; unknown or no kinds are an error."""
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"metric kinds must be among {KINDS}, got {list(kinds)}")
    return list(kinds)


def why_not(nxt: Word | None, kind: str, layout: TokenLayout, resolver) -> str | None:
    """Why ``kind`` cannot read ``nxt`` out (None when it can)."""
    if kind not in KINDS:
        raise ValueError(f"metric kind must be one of {KINDS}, got {kind!r}")
    if nxt is None:
        return "the word is the utterance's last word (no next word to read out)"
    if kind == "speech":
        if nxt.modality != "speech" or not nxt.units:
            return f"the next word {nxt.word!r} is not spoken"
        return None
    if layout.text_marker_id is None:
        return f"family {layout.spec.name!r} has no text marker to switch to text"
    if not resolver(nxt.word).found:
        return f"the next word {nxt.word!r} has no text target token"
    return None


def continuation(
    prefix: Int[Tensor, " pos"], nxt: Word | None, kind: str, layout: TokenLayout, resolver
) -> tuple[Int[Tensor, " ids"], Readout] | str:
    """``prefix`` (ending with the word) + what ``kind`` reads out of ``nxt``; or why not."""
    reason = why_not(nxt, kind, layout, resolver)
    if reason is not None:
        return reason
    n = len(prefix)
    if kind == "speech":
        units = layout.units_to_tokens(list(nxt.units))
        ids = torch.cat([prefix, units])
        return ids, Readout.same(1, torch.arange(n - 1, n - 1 + len(units)), units)
    ids = torch.cat([prefix, torch.tensor([layout.text_marker_id])])
    return ids, Readout.same(1, [n], [resolver(nxt.word).token_id])


@dataclass
class WordItem:
    """One spoken word under one metric kind: a prompt ending in the read-out and its positions."""

    utterance: str
    word_index: int
    word: str
    kind: str
    ids: Int[Tensor, " pos"]
    readout: Readout
    positions: Int[Tensor, " n"]  # the word's unit positions in ``ids``


SKIPPED_COLUMNS = ["utterance", "word_index", "metric", "reason"]


def word_items(
    utterances: Sequence[Utterance], layout: TokenLayout, tokenizer, kinds: Sequence[str] = KINDS
) -> tuple[list[WordItem], pd.DataFrame]:
    """Items for every spoken content word with a next word, and the (word, kind)s skipped."""
    kinds = check_kinds(kinds)
    resolver = TargetResolver(tokenizer, layout)
    items, skipped = [], []
    for utt in utterances:
        prompt = None
        for w, word in enumerate(utt.words[:-1]):
            if word.modality != "speech" or not word.content:
                continue
            if prompt is None:
                prompt = utt.to_prompt(layout, tokenizer)
            pos = prompt.word_positions[w]
            prefix = prompt.input_ids[: int(pos[-1]) + 1]
            for kind in kinds:
                got = continuation(prefix, utt.words[w + 1], kind, layout, resolver)
                if isinstance(got, str):
                    skipped.append(dict(zip(SKIPPED_COLUMNS, (utt.id, w, kind, got), strict=True)))
                    continue
                items.append(WordItem(utt.id, w, word.word, kind, got[0], got[1], pos))
    return items, pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)


__all__ = ["KINDS", "WordItem", "check_kinds", "continuation", "why_not", "word_items"]
