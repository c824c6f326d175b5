"""The paper's reading of a lens run beside ours, in one table, and transcription strength.

**The paper's protocol** (``--protocol paper``), as far as public sources establish it
(docs/research/eval_set_sources.md section 5): layer-wise Recall@k of the spoken word's own text
token (current word) and of the next word's, in the word's logits max-pooled over its speech
positions, over the text vocabulary, k in {1, 5, 10}. Which words count is not established, so
the paper's rows use every spoken word (``words=all``) with no control.

**Ours**, beside it: the excess of transcription@k at or after the uniqueness point over the
matched control and over the word's own pre-onset prediction, and of next word@k (last
position) over its control, content words, 95% CIs from a bootstrap over word types
(:func:`speech_interp.lens.excess_over_control`).

**Transcription strength** of a model (for the correlation with spoken knowledge): the paper's
current-word Recall@5 at the intermediate layer (1..L-1) where it is largest over all words,
then per fact category at that same layer. The layer is chosen on all words before any category
is looked at.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from speech_interp.lens.metrics import excess_over_control, rank_column

PAPER_KS: tuple[int, ...] = (1, 5, 10)
STRENGTH_K = 5
PROTOCOL_COLUMNS = [
    "model", "lens", "layer", "reading", "metric", "k", "position_rule", "words", "baseline",
    "value", "ci_low", "ci_high", "n",
]  # fmt: skip
# (reading, metric, position rule, words, baseline) of each row kind of the table
PAPER_ROWS = (
    ("paper", "transcription", "maxpool", "all", "none"),
    ("paper", "next_word", "maxpool", "all", "none"),
)
OUR_ROWS = (
    ("ours", "transcription_excess", "after_uniqueness", "content", "control"),
    ("ours", "transcription_excess_pre_onset", "after_uniqueness", "content", "pre_onset"),
    ("ours", "next_word_excess", "last", "content", "control"),
)


def protocol_table(
    summary: pd.DataFrame,
    words: pd.DataFrame,
    *,
    ks: Sequence[int] = PAPER_KS,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """The paper's rows (from ``lens.csv``'s ``summary``) and ours (paired excesses from the
    per-word frame ``words``) for every model, lens, layer and k (``PROTOCOL_COLUMNS``)."""
    parts = []
    for reading, metric, rule, word_set, baseline in PAPER_ROWS:
        sel = summary[
            (summary["metric"] == metric) & (summary["vocab"] == "text")
            & (summary["position_rule"] == rule) & (summary["words"] == word_set)
            & (summary["k"].isin(list(ks)))
        ].copy()  # fmt: skip
        if sel.empty:
            raise ValueError(f"the lens summary has no {metric} rows under {rule!r} (text vocab)")
        sel["reading"], sel["baseline"] = reading, baseline
        parts.append(sel)
    for reading, metric, rule, word_set, baseline in OUR_ROWS:
        base_metric = metric.split("_excess")[0]
        for k in ks:
            ex = excess_over_control(
                words, metric=base_metric, k=k, position_rule=rule, words=word_set,
                baseline=baseline, n_boot=n_boot, seed=seed,
            )  # fmt: skip
            ex["reading"], ex["baseline"] = reading, baseline
            parts.append(ex)
    table = pd.concat(parts, ignore_index=True)
    table["k"] = table["k"].astype(int)
    return (
        table[PROTOCOL_COLUMNS]
        .sort_values(["model", "lens", "reading", "metric", "k", "layer"], kind="stable")
        .reset_index(drop=True)
    )


def protocol_markdown(
    table: pd.DataFrame, k: int = 5, lens_rows: pd.DataFrame | None = None
) -> str:
    """One markdown table per model and lens at one k: layers down, both readings across; with
    ``lens_rows`` (lens.csv), the same lens's content-word text ceiling as a last column (a
    transcription rate counts only where the lens reads the written word)."""
    out = []
    ceiling = None
    if lens_rows is not None and "text_ceiling" in set(lens_rows["metric"]):
        ceiling = lens_rows[(lens_rows["metric"] == "text_ceiling") & (lens_rows["k"] == k)
                            & (lens_rows["words"] == "content")]  # fmt: skip
    for (model, lens), g in table[table["k"] == k].groupby(["model", "lens"], sort=False):
        cols = list(dict.fromkeys(zip(g["reading"], g["metric"], strict=True)))
        head = ["layer"] + [f"{r}: {m}@{k}" for r, m in cols]
        own = None
        if ceiling is not None:
            own = ceiling[(ceiling["model"] == model) & (ceiling["lens"] == lens)]
            head.append(f"text ceiling@{k} (content)")
        lines = [f"**{model}, {lens} lens**", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]  # fmt: skip
        for layer, lg in g.groupby("layer", sort=True):
            cells = [str(layer)]
            for r, m in cols:
                row = lg[(lg["reading"] == r) & (lg["metric"] == m)]
                if row.empty:
                    cells.append("")
                    continue
                v, lo, hi = (float(row.iloc[0][c]) for c in ("value", "ci_low", "ci_high"))
                cells.append(f"{v:.2f} [{lo:.2f}, {hi:.2f}]")
            if own is not None:
                row = own[own["layer"] == layer]
                cells.append(
                    ""
                    if row.empty
                    else "{:.2f} [{:.2f}, {:.2f}]".format(
                        *(float(row.iloc[0][c]) for c in ("value", "ci_low", "ci_high"))
                    )
                )
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def strength_layer(words: pd.DataFrame, n_layers: int, k: int = STRENGTH_K) -> int:
    """The intermediate layer (1..L-1) of the largest paper current-word Recall@k (all words;
    the first such layer on a tie)."""
    col = rank_column("transcription", "text", "maxpool")
    mid = words[(words["layer"] >= 1) & (words["layer"] <= max(1, n_layers - 1))]
    mid = mid[mid[col].notna()]
    if mid.empty:
        raise ValueError("no spoken word has a text target: transcription strength is undefined")
    rates = (mid[col] < k).groupby(mid["layer"]).mean()
    return int(rates.idxmax())


def category_strength(
    words: pd.DataFrame, categories: dict[str, str], layer: int, k: int = STRENGTH_K
) -> pd.DataFrame:
    """Per fact category (``categories``: utterance id -> category): the paper's current-word
    Recall@k at ``layer`` (``transcription_strength``) and its word count."""
    col = rank_column("transcription", "text", "maxpool")
    at = words[(words["layer"] == layer) & words[col].notna()].copy()
    at["category"] = at["utterance"].map(categories)
    at["hit"] = (at[col] < k).astype(float)
    rows = [("all", float(at["hit"].mean()), len(at))]
    rows += [(c, float(g["hit"].mean()), len(g)) for c, g in at.groupby("category", sort=True)]
    return pd.DataFrame(rows, columns=["category", "transcription_strength", "n_words"])


def strength_correlation(points: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Pearson r between transcription strength and spoken knowledge over ``points`` (one row
    per model x category: ``transcription_strength``, ``score``), with a 95% percentile
    bootstrap CI resampling the points; None values with fewer than 3 points."""
    pts = points.dropna(subset=["transcription_strength", "score"])
    n = len(pts)
    if n < 3 or pts["transcription_strength"].nunique() < 2 or pts["score"].nunique() < 2:
        return {"r": None, "ci_low": None, "ci_high": None, "n_points": n,
                "note": "fewer than 3 points or a constant column: no correlation"}  # fmt: skip
    x, y = pts["transcription_strength"].to_numpy(), pts["score"].to_numpy()
    r = float(np.corrcoef(x, y)[0, 1])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        if np.std(x[i]) > 0 and np.std(y[i]) > 0:
            draws.append(np.corrcoef(x[i], y[i])[0, 1])
    lo, hi = (float(v) for v in np.quantile(draws, [0.025, 0.975]))
    return {
        "r": r,
        "ci_low": lo,
        "ci_high": hi,
        "n_points": n,
        "note": "Pearson r over model x category points; CI: bootstrap over the points",
    }


__all__ = [
    "PAPER_KS",
    "PROTOCOL_COLUMNS",
    "category_strength",
    "protocol_markdown",
    "protocol_table",
    "strength_correlation",
    "strength_layer",
]
