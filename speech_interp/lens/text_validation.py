"""Validate lenses on text, where the word is known: which word does each lens read, per stream?

For each lens and stream, over written sentences the lens was not fitted on (rates with
word-type CIs, top-``k`` over the text vocabulary, :func:`~speech_interp.lens.ceiling.rate_rows`):

- ``written_current``: the word itself at its last token (the text ceiling's reading);
  ``written_current_multi_token``: the same on words of two or more tokens only;
  ``written_current_unseen``: on word types outside the lens's fit (a fitted lens only);
- ``written_previous``: the previous word at the same position;
- ``written_next``: the next word at the same position (the next word read before its first token
  is written: its prediction from the left context, the pre-onset reading);
- ``split_current``: single-token words written in 2-4 vocabulary pieces, read at the last piece
  (:func:`~speech_interp.lens.word_forms.split_words`), beside ``split_unsplit``: the same words
  as written normally;
- ``nonword_original``: content words replaced by non-words, the replaced word's target read at
  the non-word's last token (a lens that reads the context's expectation, not the input, scores
  here); ``nonword_own``: the non-word's own target (its first sub-token).

A random-init copy of the model and a fit on permuted targets are the ceiling controls of
:mod:`speech_interp.lens.ceiling_controls`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from tqdm.auto import tqdm

from speech_interp.hooks import TokenLayout
from speech_interp.lens.ceiling import rate_rows, written_ranks
from speech_interp.lens.current import WrittenWords, stream_states, written_words
from speech_interp.lens.lenses import Lens
from speech_interp.lens.word_forms import nonword_words, split_words, subset

METRICS = (
    "written_current", "written_current_multi_token", "written_current_unseen",
    "written_previous", "written_next", "split_current", "split_unsplit", "nonword_original",
    "nonword_own",
)  # fmt: skip
# English function words: the words a prose sentence's content flag leaves out
PROSE_FUNCTION_WORDS = frozenset(
    "a an the and or but if then than so as of in on at to for from by with without into onto "
    "over under about after before between through is are was were be been being has have had "
    "do does did not no this that these those it its they them their he she his her we you i "
    "which who whom what when where how can could may might must shall should will would".split()
)


def prose_content(sentences: Sequence[Sequence[str]]) -> list[list[bool]]:
    """Content flags of prose words: not a :data:`PROSE_FUNCTION_WORDS` word (case-insensitive)."""
    return [[w.lower() not in PROSE_FUNCTION_WORDS for w in s] for s in sentences]


def _rates(ranks: pd.DataFrame, metric: str, column: str, **common) -> pd.DataFrame:
    if ranks.empty or ranks[column].isna().all():
        return pd.DataFrame()
    return rate_rows(ranks, {metric: column}, **common)


def text_validation(
    model,
    layout: TokenLayout,
    lenses: Mapping[str, Lens],
    sentences: Sequence[Sequence[str]],
    content: Sequence[Sequence[bool]],
    *,
    ks: Sequence[int] = (1, 5),
    model_id: str = "",
    seed: int = 0,
    n_boot: int = 2000,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """(lens.csv-style rows of every :data:`METRICS` per lens and stream, counts of the word
    forms) of ``lenses`` on ``sentences`` (word lists) with their ``content`` flags."""
    tok = model.tokenizer
    written = written_words(layout, tok, sentences, content)
    split, keep = split_words(tok, written, seed)
    original, own, swap = nonword_words(layout, tok, sentences, content, seed)
    forms: dict[str, WrittenWords] = {"written": written, "split": split, "nonword": original}
    states = {
        name: stream_states(model, words, progress=progress)
        for name, words in forms.items()
        if len(words)
    }
    common = dict(ks=ks, model_id=model_id, seed=seed, n_boot=n_boot)
    out = []
    for name, lens in tqdm(lenses.items(), desc="lenses", disable=not progress):
        rows = []
        ranks = written_ranks(model, layout, lens, written, reads=("current", "previous", "next"),
                              states=states["written"])  # fmt: skip
        for read in ("current", "previous", "next"):
            rows.append(_rates(ranks, f"written_{read}", f"rank_{read}", **common))
        rows.append(_rates(ranks[ranks.n_tokens > 1], "written_current_multi_token",
                           "rank_current", **common))  # fmt: skip
        fitted = getattr(lens, "fit_word_types", frozenset())
        if fitted:
            unseen = ranks[~ranks.word.isin(fitted)]
            rows.append(_rates(unseen, "written_current_unseen", "rank_current", **common))
        if len(split):
            got = written_ranks(model, layout, lens, split, reads=("current",),
                                states=states["split"])  # fmt: skip
            rows.append(_rates(got, "split_current", "rank_current", **common))
            same = subset(written, keep)
            picked = states["written"][:, keep]
            got = written_ranks(model, layout, lens, same, reads=("current",), states=picked)
            rows.append(_rates(got, "split_unsplit", "rank_current", **common))
        if len(original):
            for metric, words in (("nonword_original", original), ("nonword_own", own)):
                got = written_ranks(model, layout, lens, words, reads=("current",),
                                    states=states["nonword"])  # fmt: skip
                rows.append(_rates(got, metric, "rank_current", **common))
        frame = pd.concat([r for r in rows if not r.empty], ignore_index=True)
        frame["lens"] = name
        out.append(frame)
    counts = {
        "sentences": len(sentences),
        "written_words": len(written),
        "multi_token_words": int((written.n_tokens > 1).sum()),
        "split_words": len(split),
        "split_word_types": len(set(split.words)),
        "single_token_words_unsplittable": int((written.n_tokens == 1).sum()) - len(split),
        "nonword_words": len(original),
        "nonword_types": len(swap),
    }
    return pd.concat(out, ignore_index=True), counts


def validation_markdown(rows: pd.DataFrame, *, k: int = 5, words: str = "all") -> str:
    """Per lens, a table of streams x metrics: rate at top-``k`` [95% CI]."""
    picked = rows[(rows.k == k) & (rows.words == words)]
    metrics = [m for m in METRICS if m in set(picked.metric)]
    lines = []
    for lens, part in picked.groupby("lens", sort=False):
        lines += [f"### {lens} lens (top-{k}, {words} words)", ""]
        lines.append("| stream | " + " | ".join(metrics) + " |")
        lines.append("|---" * (len(metrics) + 1) + "|")
        cell = {(r.metric, r.layer): f"{r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
                for r in part.itertuples()}  # fmt: skip
        for layer in sorted(part.layer.unique()):
            cells = [cell.get((m, layer), "n/a") for m in metrics]
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_validation(rows: pd.DataFrame, path, *, k: int = 5, words: str = "all"):
    """One panel per metric, one line per lens (rate at top-``k`` with its CI band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picked = rows[(rows.k == k) & (rows.words == words)]
    metrics = [m for m in METRICS if m in set(picked.metric)]
    n_cols = 3
    n_rows = -(-len(metrics) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4 * n_cols, 3 * n_rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for lens, part in picked[picked.metric == metric].groupby("lens"):
            part = part.sort_values("layer")
            ax.plot(part.layer, part.value, marker=".", label=lens)
            ax.fill_between(part.layer, part.ci_low, part.ci_high, alpha=0.2)
        ax.set_title(metric, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("stream")
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel(f"share of {words} words in top-{k}")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = [
    "METRICS", "PROSE_FUNCTION_WORDS", "plot_validation", "prose_content", "text_validation",
    "validation_markdown",
]  # fmt: skip
