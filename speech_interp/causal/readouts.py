"""What every causal test reads out: the next word after a spoken word, in speech or in text.

**Metrics** (:data:`METRICS`), for a prompt ``prefix`` that ends with the word's last unit and the
word ``nxt`` that follows it:

- ``speech``: ``prefix`` + ``nxt``'s units; the metric is the sum of the log-probs of those units,
  each given everything before it. Needs a spoken next word.
- ``text``: ``prefix`` + the text marker (a switch to text); the metric is the log-prob of
  ``nxt``'s text target token (rule in :mod:`speech_interp.data.targets`) at the marker. Needs a
  text marker in the family and a target for the word.

A word without what a metric needs is skipped for that metric, with the reason :func:`why_not`
gives; :func:`read_outs` is the one builder every causal test reads its prompts from, and the
callers list what it skipped, they never drop it silently.
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

METRICS: tuple[str, ...] = ("speech", "text")


def check_metrics(metrics: Sequence[str]) -> list[str]:
    """The metrics as a list; unknown or no metrics are an error."""
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(f"metrics must be among {METRICS}, got {list(metrics)}")
    return list(metrics)


def why_not(nxt: Word | None, metric: str, layout: TokenLayout, resolver) -> str | None:
    """Why ``metric`` cannot read ``nxt`` out (None when it can)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if nxt is None:
        return "the word is the utterance's last word (no next word to read out)"
    if metric == "speech":
        if nxt.modality != "speech" or not nxt.units:
            return f"the next word {nxt.word!r} is not spoken"
        return None
    if layout.text_marker_id is None:
        return f"family {layout.spec.name!r} has no text marker to switch to text"
    if not resolver(nxt.word).found:
        return f"the next word {nxt.word!r} has no text target token"
    return None


def continuation(
    prefix: Int[Tensor, " pos"], nxt: Word | None, metric: str, layout: TokenLayout, resolver
) -> tuple[Int[Tensor, " ids"], Readout] | str:
    """``prefix`` (ending with the word) + what ``metric`` reads out of ``nxt``; or why not."""
    reason = why_not(nxt, metric, layout, resolver)
    if reason is not None:
        return reason
    n = len(prefix)
    if metric == "speech":
        units = layout.units_to_tokens(list(nxt.units))
        ids = torch.cat([prefix, units])
        return ids, Readout.same(1, torch.arange(n - 1, n - 1 + len(units)), units)
    ids = torch.cat([prefix, torch.tensor([layout.text_marker_id])])
    return ids, Readout.same(1, [n], [resolver(nxt.word).token_id])


Prompt = tuple[Int[Tensor, " ids"], Readout]


def read_outs(
    prefix: Int[Tensor, " pos"], nxt: Word | None, metrics: Sequence[str], layout, resolver
) -> tuple[dict[str, Prompt], dict[str, str]]:
    """Every metric's prompt and read-out of ``nxt`` after ``prefix`` (metric -> (ids, readout),
    in the order of ``metrics``), and why the others cannot read it (metric -> reason)."""
    prompts, reasons = {}, {}
    for metric in metrics:
        got = continuation(prefix, nxt, metric, layout, resolver)
        if isinstance(got, str):
            reasons[metric] = got
        else:
            prompts[metric] = got
    return prompts, reasons


@dataclass
class WordItem:
    """One spoken word under one metric: a prompt ending in the read-out and its positions."""

    utterance: str
    word_index: int
    word: str
    metric: str
    ids: Int[Tensor, " pos"]
    readout: Readout
    positions: Int[Tensor, " n"]  # the word's unit positions in ``ids``


SKIPPED_COLUMNS = ["utterance", "word_index", "metric", "reason"]


def word_items(
    utterances: Sequence[Utterance],
    layout: TokenLayout,
    tokenizer,
    metrics: Sequence[str] = METRICS,
) -> tuple[list[WordItem], pd.DataFrame]:
    """Items for every spoken content word with a next word, and the (word, metric)s skipped."""
    metrics = check_metrics(metrics)
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
            prompts, reasons = read_outs(prefix, utt.words[w + 1], metrics, layout, resolver)
            for metric in metrics:  # the data's order: each metric's item or its reason
                if metric in reasons:
                    row = (utt.id, w, metric, reasons[metric])
                    skipped.append(dict(zip(SKIPPED_COLUMNS, row, strict=True)))
                else:
                    ids, readout = prompts[metric]
                    items.append(WordItem(utt.id, w, word.word, metric, ids, readout, pos))
    return items, pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)


__all__ = [
    "METRICS",
    "Prompt",
    "WordItem",
    "check_metrics",
    "continuation",
    "read_outs",
    "why_not",
    "word_items",
]
