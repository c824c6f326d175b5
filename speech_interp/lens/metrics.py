"""Lens metrics: from per-word ranks to the rates of ``lens.csv``, with clustered bootstrap CIs.

**Rank / tie rule**: a target's rank is the number of *other* tokens with a strictly larger logit
(over the text vocabulary, or over the full vocabulary); the target is in the top-k when its rank
is < k, so tokens tied with the target count in its favour.

**Position rules** (which of a spoken word's positions a hit may come from):

- ``after_uniqueness``: the best rank over the word's positions at or after its uniqueness point
  (:mod:`speech_interp.data.uniqueness`: the first unit that no other word shares as a prefix).
  This is the rule of the transcription claim: before that point the units heard fit other words
  too, so a hit there may be prediction from context.
- ``pre_onset``: the rank at the last position *before* the word's first token (what the model
  already predicts from context alone); the transcription claim must exceed it.
- ``maxpool``: the rank in the word's logits max-pooled over all its positions (the seed paper's
  rule).
- ``any``: the best rank over all the word's positions; ``last``: the rank at its last position.

**Metrics** (per layer 0..L; rates with a 95% CI from a bootstrap over word types, and n):

- ``transcription`` @k: the spoken word's own target token (rule in
  :mod:`speech_interp.data.targets`) is in the lens top-k, under each position rule.
- ``transcription_control`` @k: the same with the word's drawn control word as target (matched
  on category and frequency); ``transcription_control_expected`` @k: the hit averaged over every
  member of the word's control pool (the draw's expectation).
- ``next_word`` / ``next_word_control`` @k: the next word's (or its control's) target in top-k
  at the word's last position (``position_rule`` ``last``, the default), or in the word's
  logits max-pooled over all its positions (``maxpool``, the seed paper's reading). Words
  without a next word (utterance-final) are out of n; ``words=content`` keeps words whose
  *next* word is content.
- ``speech_mass``: lens probability (full-vocabulary softmax) on speech-unit tokens, averaged over
  the word's positions (``any``) or at its last position (``last``), then over words; ``k`` empty.
- lens quality (:mod:`speech_interp.lens.quality`), over the full vocabulary at the word's
  positions (``any``), averaged over the positions and then over words: ``kl_to_final`` (KL of
  the model's final distribution to the lens's, nats; ``k`` empty) and ``top1_agreement``
  (share of positions whose lens top-1 is the model's own final top-1; ``k`` 1).

``vocab`` is ``text`` (rank among text-vocabulary tokens) or ``full`` (among all tokens);
``words=content`` keeps content words (their own flag; the next word's flag for next_word). A
word is in a metric's n when its target (and for controls, its control) exists under every
position rule of the metric.

**CIs**: percentile bootstrap (2000 resamples) of word *types* (:mod:`speech_interp.stats`
clusters): occurrences of one word are not independent. The type is the target word's (the next
word's for next_word). The claim is always an excess (:func:`excess_over_control`: paired over
the same words, over the drawn control or over ``pre_onset``).

"""

from __future__ import annotations

from collections.abc import Sequence

import einops
import numpy as np
import pandas as pd

from speech_interp.stats import bootstrap_ci, paired_excess

LENS_CSV = "lens.csv"  # the file name of the summary table (columns: LENS_COLUMNS)
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
POSITION_RULES = ("after_uniqueness", "any", "last", "pre_onset", "maxpool")
MASS_RULES = ("any", "last")
QUALITY_METRICS = {"kl_to_final": pd.NA, "top1_agreement": 1}  # metric -> its k
# metric -> (rank-column prefix, position rules, column holding the content flag it filters on,
#            column naming the word type its CIs cluster on)
METRICS = {
    "transcription": ("rank", POSITION_RULES, "content", "word"),
    "transcription_control": ("control_rank", POSITION_RULES, "content", "word"),
    "next_word": ("next_rank", ("last", "maxpool"), "next_content", "next_word"),
    "next_word_control": ("next_control_rank", ("last", "maxpool"), "next_content", "next_word"),
}
RANK_KINDS = ("rank", "control_rank", "next_rank", "next_control_rank")
CI_RULE = "percentile bootstrap over word types (cluster bootstrap), 95%"
RANK_COLUMNS = [
    f"{prefix}_{vocab}_{rule}" for prefix, rules, *_ in METRICS.values() for vocab in VOCABS
    for rule in rules
]  # fmt: skip


def rank_column(metric: str, vocab: str, position_rule: str) -> str:
    """Per-word column holding ``metric``'s target rank for one vocabulary and position rule."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    prefix, rules, *_ = METRICS[metric]
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


def first_layer(group: pd.DataFrame) -> pd.DataFrame:
    """One row per word (its first layer) of a sorted per-word group."""
    return group[group["layer"] == group["layer"].min()]


def word_types(group: pd.DataFrame, column: str = "word") -> np.ndarray:
    """Lower-case word type per word of a sorted group: the clusters of its bootstrap."""
    return first_layer(group)[column].fillna("").str.lower().to_numpy()


def _word_filter(group: pd.DataFrame, column: str, words: str) -> np.ndarray:
    flags = first_layer(group)[column]
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


def _ci(values: np.ndarray, clusters: np.ndarray, n_boot: int, seed: int, alpha: float):
    if values.shape[0] == 0:
        return None, None, None
    return bootstrap_ci(values, n_boot=n_boot, seed=seed, alpha=alpha, clusters=clusters)


def summarize(
    words: pd.DataFrame,
    ks: Sequence[int] = (1, 5, 10),
    *,
    pool: pd.DataFrame | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The tidy ``lens.csv`` table from a per-word frame (one or several model / lens runs);
    ``pool`` (:attr:`LensResult.pool`) adds ``transcription_control_expected``."""
    rows: list[dict] = []
    for key, group, layers in sorted_groups(words):
        for metric, (_, rules, flag, cluster) in METRICS.items():
            types = word_types(group, cluster)
            for word_set in ("all", "content"):
                keep = _word_filter(group, flag, word_set)
                for vocab in VOCABS:
                    for rule in rules:
                        col = per_item(group, rank_column(metric, vocab, rule))
                        keep = keep & ~np.isnan(col[:, 0])
                cols, blocks = [], []
                for vocab in VOCABS:
                    for rule in rules:
                        ranks = per_item(group, rank_column(metric, vocab, rule))[keep]
                        for k in ks:
                            cols.append((k, vocab, rule, word_set))
                            blocks.append((ranks < k).astype(np.float64))
                mean, lo, hi = _ci(np.concatenate(blocks, axis=1), types[keep], n_boot, seed, alpha)
                rows += _rows(key, layers, metric, cols, mean, lo, hi, int(keep.sum()))
        if pool is not None:
            rows += _expected_rows(key, group, layers, pool, ks, n_boot, seed, alpha)
        types = word_types(group)
        for word_set in ("all", "content"):
            keep = _word_filter(group, "content", word_set)
            blocks = [per_item(group, f"speech_mass_{rule}")[keep] for rule in MASS_RULES]
            cols = [(pd.NA, "full", rule, word_set) for rule in MASS_RULES]
            mean, lo, hi = _ci(np.concatenate(blocks, axis=1), types[keep], n_boot, seed, alpha)
            rows += _rows(key, layers, "speech_mass", cols, mean, lo, hi, int(keep.sum()))
        for metric, k in QUALITY_METRICS.items():
            if metric not in group:
                continue
            for word_set in ("all", "content"):
                keep = _word_filter(group, "content", word_set)
                values = per_item(group, metric)[keep]
                mean, lo, hi = _ci(values, types[keep], n_boot, seed, alpha)
                cols = [(k, "full", "any", word_set)]
                rows += _rows(key, layers, metric, cols, mean, lo, hi, int(keep.sum()))
    return _tidy(rows)


def expected_control_hits(
    group: pd.DataFrame, pool: pd.DataFrame, k: int, vocab: str, rule: str
) -> np.ndarray:
    """``[items, layers]``: per word and layer, the mean over its control pool of [member's
    target in the top-k] (NaN for a word without a pool) for one run's sorted group."""
    return _expected_tables(group, pool, [k], [(vocab, rule)])[k, vocab, rule]


def _expected_tables(group, pool, ks, vocab_rules) -> dict[tuple, np.ndarray]:
    """:func:`expected_control_hits` for every (k, vocab, rule), from one pass over ``pool``."""
    key = group.iloc[0][LENS_COLUMNS[:3]].tolist()
    mine = pool[(pool[LENS_COLUMNS[:3]] == key).all(axis=1)]
    n_layers = group["layer"].nunique()
    items = group["item"].to_numpy()[::n_layers]  # sorted by item, then layer
    row = np.searchsorted(items, mine["item"].to_numpy())
    cell = row * n_layers + np.searchsorted(np.sort(group["layer"].unique()), mine["layer"])
    out = {}
    for vocab, rule in vocab_rules:
        ranks = mine[f"rank_{vocab}_{rule}"].to_numpy(dtype=np.float64)
        size = np.bincount(cell, weights=~np.isnan(ranks), minlength=len(items) * n_layers)
        size[size == 0] = np.nan  # a word without a pool (or without this position)
        for k in ks:
            hits = np.bincount(cell, weights=ranks < k, minlength=len(size)) / size
            out[k, vocab, rule] = einops.rearrange(hits, "(w l) -> w l", l=n_layers)
    return out


def _expected_rows(key, group, layers, pool, ks, n_boot, seed, alpha) -> list[dict]:
    types = word_types(group)
    rows: list[dict] = []
    vocab_rules = [(vocab, rule) for vocab in VOCABS for rule in POSITION_RULES]
    every = _expected_tables(group, pool, ks, vocab_rules)
    for word_set in ("all", "content"):
        keep = _word_filter(group, "content", word_set)
        tables = {(k, v, r): every[k, v, r] for v, r in vocab_rules for k in ks}
        for table in tables.values():
            keep = keep & ~np.isnan(table[:, 0])
        cols = [(k, vocab, rule, word_set) for k, vocab, rule in tables]
        blocks = np.concatenate([t[keep] for t in tables.values()], axis=1)
        mean, lo, hi = _ci(blocks, types[keep], n_boot, seed, alpha)
        metric = "transcription_control_expected"
        rows += _rows(key, layers, metric, cols, mean, lo, hi, int(keep.sum()))
    return rows


def _tidy(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=LENS_COLUMNS)
    frame["k"] = frame["k"].astype("Int64")
    frame["n"] = frame["n"].astype(int)
    return frame


BASELINES = ("control", "pre_onset")


def excess_over_control(
    per_word: pd.DataFrame,
    *,
    metric: str = "transcription",
    k: int = 5,
    vocab: str = "text",
    position_rule: str | None = None,
    words: str = "content",
    baseline: str = "control",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per layer: mean(hit - baseline hit) with a paired bootstrap CI over word types.

    ``metric`` is ``transcription`` (default rule ``after_uniqueness``) or ``next_word``
    (``last``). ``baseline``: ``control`` (the same rule with the drawn control's target; metric
    ``{metric}_excess``) or ``pre_onset`` (the word's own target at the position before it;
    transcription only; metric ``{metric}_excess_pre_onset``). Words lacking either value are
    left out (n counts the pairs). Rows use the ``lens.csv`` columns.
    """
    if metric not in ("transcription", "next_word"):
        raise ValueError(f"excess is defined for 'transcription' and 'next_word', not {metric!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if baseline == "pre_onset" and metric != "transcription":
        raise ValueError("the pre_onset baseline is defined for transcription only")
    rule = position_rule or METRICS[metric][1][0]
    own_col = rank_column(metric, vocab, rule)
    if baseline == "control":
        base_col, name = rank_column(f"{metric}_control", vocab, rule), f"{metric}_excess"
    else:
        base_col, name = rank_column(metric, vocab, "pre_onset"), f"{metric}_excess_pre_onset"
    rows: list[dict] = []
    for key, group, layers in sorted_groups(per_word):
        own, base = per_item(group, own_col), per_item(group, base_col)
        keep = _word_filter(group, METRICS[metric][2], words)
        keep = keep & ~np.isnan(own[:, 0]) & ~np.isnan(base[:, 0])
        n = int(keep.sum())
        a, b = (own[keep] < k).astype(float), (base[keep] < k).astype(float)
        types = word_types(group, METRICS[metric][3])[keep]
        mean, lo, hi = (None,) * 3
        if n:
            mean, lo, hi = paired_excess(
                a, b, n_boot=n_boot, seed=seed, alpha=alpha, clusters=types
            )
        cols = [(k, vocab, rule, words)]
        rows += _rows(key, layers, name, cols, mean, lo, hi, n)
    return _tidy(rows)


def _excess_items(frame: pd.DataFrame, layer: int, metric: str, k: int, vocab: str, words: str):
    """(word keys, kept mask, per-word excess hit minus control hit, group) of one lens run's
    ``metric`` at ``layer``."""
    rule = METRICS[metric][1][0]
    own_col = rank_column(metric, vocab, rule)
    base_col = rank_column(f"{metric}_control", vocab, rule)
    ((_, group, layers),) = list(sorted_groups(frame))
    j = int(np.searchsorted(layers, layer))
    if j >= len(layers) or layers[j] != layer:
        raise ValueError(f"layer {layer} is not in the lens run (layers {layers.tolist()})")
    own, base = per_item(group, own_col)[:, j], per_item(group, base_col)[:, j]
    keys = first_layer(group)[["utterance", "word_index"]].to_numpy()
    keep = _word_filter(group, METRICS[metric][2], words) & ~np.isnan(own) & ~np.isnan(base)
    return keys, keep, (own < k).astype(float) - (base < k).astype(float), group


def excess_difference(
    words_a: pd.DataFrame,
    words_b: pd.DataFrame,
    layer_a: int,
    layer_b: int,
    *,
    metric: str = "transcription",
    k: int = 5,
    vocab: str = "text",
    words: str = "content",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple:
    """Excess over control of model A at ``layer_a`` minus that of model B at ``layer_b``, on the
    same words (two lens runs over one data set): ``(mean, lo, hi, n)``, paired bootstrap over
    word types (the rule of :func:`excess_over_control`)."""
    return pooled_excess_difference(
        [(words_a, words_b, layer_a, layer_b)], metric=metric, k=k, vocab=vocab, words=words,
        n_boot=n_boot, seed=seed, alpha=alpha,
    )  # fmt: skip


def pooled_excess_difference(
    pairs: Sequence[tuple[pd.DataFrame, pd.DataFrame, int, int]],
    *,
    metric: str = "transcription",
    k: int = 5,
    vocab: str = "text",
    words: str = "content",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple:
    """:func:`excess_difference` pooled over ``pairs`` (A's lens words, B's, A's layer, B's
    layer; e.g. one pair per training seed, all on the same words): per word, A's excess minus
    B's averaged over the pairs, bootstrap over word types; only words scored in every run
    count. ``(mean, lo, hi, n)``."""
    if not pairs:
        raise ValueError("no pair of lens runs to compare")
    keys = keep = group = None
    a_parts, b_parts = [], []
    for words_a, words_b, layer_a, layer_b in pairs:
        for frame, layer, parts in ((words_a, layer_a, a_parts), (words_b, layer_b, b_parts)):
            got_keys, got_keep, ex, got_group = _excess_items(frame, layer, metric, k, vocab, words)
            if keys is None:
                keys, keep, group = got_keys, got_keep, got_group
            elif got_keys.shape != keys.shape or (got_keys != keys).any():
                raise ValueError("the lens runs must score the same words (same data, same order)")
            keep = keep & got_keep
            parts.append(ex)
    types = word_types(group, METRICS[metric][3])[keep]
    ex_a, ex_b = np.mean(a_parts, axis=0)[keep], np.mean(b_parts, axis=0)[keep]
    mean, lo, hi = paired_excess(ex_a, ex_b, n_boot=n_boot, seed=seed, alpha=alpha, clusters=types)
    return mean, lo, hi, int(keep.sum())


__all__ = [
    "pooled_excess_difference",
    "LENS_CSV",
    "BASELINES",
    "CI_RULE",
    "LENS_COLUMNS",
    "METRICS",
    "POSITION_RULES",
    "expected_control_hits",
    "RANK_COLUMNS",
    "excess_difference",
    "excess_over_control",
    "per_item",
    "rank_column",
    "sorted_groups",
    "summarize",
    "word_types",
]
