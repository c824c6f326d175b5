"""Lens metrics: from per-word ranks to the rates of ``lens.csv``, with bootstrap CIs.

**Rank / tie rule**: a target's rank is the number of *other* tokens with a strictly larger logit
(over the text vocabulary, or over the full vocabulary); the target is in the top-k when its rank
is < k, so tokens tied with the target count in its favour.

**Metrics** (per layer 0..L; rates with a bootstrap 95% CI over words and n):

- ``transcription`` @k: the spoken word's own target token (rule in
  :mod:`speech_interp.data.targets`) is in the lens top-k at ``any`` of the word's unit
  positions, or at its ``last`` one.
- ``transcription_control`` @k: the same with the word's matched control word as target.
- ``next_word`` / ``next_word_control`` @k: the next word's (or its control's) target in top-k
  at the word's last position (``position_rule`` is always ``last``). Words without a next word
  (utterance-final) are out of n; ``words=content`` keeps words whose *next* word is content.
- ``speech_mass``: lens probability (full-vocabulary softmax) on speech-unit tokens, averaged over
  the word's positions (``any``) or at its last position (``last``), then over words; ``k`` empty.

``vocab`` is ``text`` (rank among text-vocabulary tokens) or ``full`` (among all tokens);
``words=content`` keeps content words (their own flag; the next word's flag for next_word).
Controls are drawn by the rule in :mod:`speech_interp.data.targets`; the claim is always the excess
over the control (:func:`excess_over_control`, paired bootstrap over the same words).

"""

from __future__ import annotations

from collections.abc import Sequence

import einops
import numpy as np
import pandas as pd

from speech_interp.stats import bootstrap_ci, paired_excess

LENS_COLUMNS = [
    "model",
    "backend",
    "lens",
    "layer",
    "metric",
    "k",
    "vocab",
    "position_rule",
    "words",
    "value",
    "ci_low",
    "ci_high",
    "n",
]
VOCABS = ("text", "full")
RULES = ("any", "last")
# metric -> (rank-column prefix, position rules, column holding the content flag it filters on)
METRICS = {
    "transcription": ("rank", RULES, "content"),
    "transcription_control": ("control_rank", RULES, "content"),
    "next_word": ("next_rank", ("last",), "next_content"),
    "next_word_control": ("next_control_rank", ("last",), "next_content"),
}
RANK_KINDS = ("rank", "control_rank", "next_rank", "next_control_rank")
RANK_COLUMNS = [
    f"{prefix}_{vocab}_{rule}" for prefix, rules, _ in METRICS.values() for vocab in VOCABS
    for rule in rules
]  # fmt: skip


def rank_column(metric: str, vocab: str, position_rule: str) -> str:
    """Per-word column holding ``metric``'s target rank for one vocabulary and position rule."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    prefix, rules, _ = METRICS[metric]
    if vocab not in VOCABS:
        raise ValueError(f"vocab must be one of {VOCABS}, got {vocab!r}")
    if position_rule not in rules:
        raise ValueError(f"{metric} has position rules {rules}, got {position_rule!r}")
    return f"{prefix}_{vocab}_{position_rule}"


def per_item(group: pd.DataFrame, column: str) -> np.ndarray:
    """``[items, layers]`` array of one per-word column (rows sorted by item, layer)."""
    n_layers = group["layer"].nunique()
    return einops.rearrange(group[column].to_numpy(dtype=np.float64), "(w l) -> w l", l=n_layers)


def sorted_groups(words: pd.DataFrame):
    for key, group in words.groupby(["model", "backend", "lens"], sort=False):
        group = group.sort_values(["item", "layer"])
        layers = np.sort(group["layer"].unique())
        if len(group) != group["item"].nunique() * len(layers):
            raise ValueError(f"{key}: the per-word frame must hold every layer for every word")
        yield key, group, layers


def _word_filter(group: pd.DataFrame, column: str, words: str) -> np.ndarray:
    flags = group[group["layer"] == group["layer"].min()][column]
    if words == "all":
        return np.ones(len(flags), dtype=bool)
    if words == "content":
        return flags.fillna(False).astype(bool).to_numpy()
    raise ValueError(f"words must be 'all' or 'content', got {words!r}")


def _rows(key, layers, metric, cols, mean, lo, hi, n) -> list[dict]:
    """``cols``: one (k, vocab, rule, words) tuple per block of len(layers) statistics."""
    rows = []
    for c, (k, vocab, rule, words) in enumerate(cols):
        for j, layer in enumerate(layers):
            i = c * len(layers) + j
            rows.append(
                dict(
                    zip(LENS_COLUMNS[:3], key, strict=True),
                    layer=int(layer),
                    metric=metric,
                    k=k,
                    vocab=vocab,
                    position_rule=rule,
                    words=words,
                    value=mean[i] if n else np.nan,
                    ci_low=lo[i] if n else np.nan,
                    ci_high=hi[i] if n else np.nan,
                    n=n,
                )
            )
    return rows


def _ci(values: np.ndarray, n_boot: int, seed: int, alpha: float):
    if values.shape[0] == 0:
        return None, None, None
    return bootstrap_ci(values, n_boot=n_boot, seed=seed, alpha=alpha)


def summarize(
    words: pd.DataFrame,
    ks: Sequence[int] = (1, 5, 10),
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The tidy ``lens.csv`` table from a per-word frame (one or several model / lens runs)."""
    rows: list[dict] = []
    for key, group, layers in sorted_groups(words):
        for metric, (_, rules, flag) in METRICS.items():
            for word_set in ("all", "content"):
                first_col = rank_column(metric, "text", rules[0])
                keep = _word_filter(group, flag, word_set)
                keep = keep & ~np.isnan(per_item(group, first_col)[:, 0])
                cols, blocks = [], []
                for vocab in VOCABS:
                    for rule in rules:
                        ranks = per_item(group, rank_column(metric, vocab, rule))[keep]
                        for k in ks:
                            cols.append((k, vocab, rule, word_set))
                            blocks.append((ranks < k).astype(np.float64))
                mean, lo, hi = _ci(np.concatenate(blocks, axis=1), n_boot, seed, alpha)
                rows += _rows(key, layers, metric, cols, mean, lo, hi, int(keep.sum()))
        for word_set in ("all", "content"):
            keep = _word_filter(group, "content", word_set)
            blocks = [per_item(group, f"speech_mass_{rule}")[keep] for rule in RULES]
            cols = [(pd.NA, "full", rule, word_set) for rule in RULES]
            mean, lo, hi = _ci(np.concatenate(blocks, axis=1), n_boot, seed, alpha)
            rows += _rows(key, layers, "speech_mass", cols, mean, lo, hi, int(keep.sum()))
    return _tidy(rows)


def _tidy(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=LENS_COLUMNS)
    frame["k"] = frame["k"].astype("Int64")
    frame["n"] = frame["n"].astype(int)
    return frame


def excess_over_control(
    per_word: pd.DataFrame,
    *,
    metric: str = "transcription",
    k: int = 5,
    vocab: str = "text",
    position_rule: str | None = None,
    words: str = "content",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per layer: mean(hit - control hit) with a paired bootstrap CI over words (same words).

    ``metric`` is ``transcription`` or ``next_word``; words lacking either target are left out
    (n counts the pairs). Rows use the ``lens.csv`` columns with metric ``{metric}_excess``.
    """
    if metric not in ("transcription", "next_word"):
        raise ValueError(f"excess is defined for 'transcription' and 'next_word', not {metric!r}")
    rule = position_rule or METRICS[metric][1][0]
    own_col = rank_column(metric, vocab, rule)
    ctrl_col = rank_column(f"{metric}_control", vocab, rule)
    rows: list[dict] = []
    for key, group, layers in sorted_groups(per_word):
        own, ctrl = per_item(group, own_col), per_item(group, ctrl_col)
        keep = _word_filter(group, METRICS[metric][2], words)
        keep = keep & ~np.isnan(own[:, 0]) & ~np.isnan(ctrl[:, 0])
        n = int(keep.sum())
        a, b = (own[keep] < k).astype(float), (ctrl[keep] < k).astype(float)
        mean, lo, hi = (None,) * 3
        if n:
            mean, lo, hi = paired_excess(a, b, n_boot=n_boot, seed=seed, alpha=alpha)
        cols = [(k, vocab, rule, words)]
        rows += _rows(key, layers, f"{metric}_excess", cols, mean, lo, hi, n)
    return _tidy(rows)


__all__ = [
    "LENS_COLUMNS",
    "METRICS",
    "RANK_COLUMNS",
    "excess_over_control",
    "per_item",
    "rank_column",
    "sorted_groups",
    "summarize",
]
