"""Figures of lens results: phase curves with CI bands and a layer x position token heatmap.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so importing this module does
not change the backend of a notebook or script.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.ticker import MaxNLocator

from speech_interp.data.prompt import Prompt
from speech_interp.hooks import TokenLayout
from speech_interp.lens.lenses import Lens
from speech_interp.lens.run import lens_top_tokens
from speech_interp.models import tokenizer_of
from speech_interp.plotting.figures import new_figure, save_figure

DEFAULT_PAIRS = (
    ("transcription", "transcription_control"),
    ("next_word", "next_word_control"),
)
# transcription against its control and its own pre-onset prediction, read at or after the
# uniqueness point; next_word*: "last"
TRANSCRIPTION_RULE = "after_uniqueness"


def _label(variant: tuple, varying: list[int]) -> str:
    parts = [str(Path(str(variant[0])).name) if i == 0 else str(variant[i]) for i in varying]
    return " / ".join(parts) or str(Path(str(variant[0])).name)


def _select(summary: pd.DataFrame, metric: str, k, vocab: str, rule: str, words: str):
    sel = summary[
        (summary["metric"] == metric)
        & (summary["vocab"] == vocab)
        & (summary["position_rule"] == rule)
        & (summary["words"] == words)
    ]
    if k is not None:
        sel = sel[sel["k"] == k]
    if sel.empty:
        raise ValueError(
            f"no rows for metric={metric!r}, k={k}, vocab={vocab!r}, position_rule={rule!r}, "
            f"words={words!r} in the summary"
        )
    return sel


def plot_phase_curves(
    summary: pd.DataFrame,
    out_png: str | Path,
    *,
    pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS,
    k: int = 5,
    vocab: str = "text",
    words: str = "content",
    speech_mass: bool = True,
    title: str | None = None,
    excess: pd.DataFrame | None = None,
) -> Path:
    """One panel per (metric, control) pair plus speech_mass; rates vs layer with 95% CI bands.
    With ``excess`` (rows of :func:`~speech_interp.lens.excess_over_control`, any number of
    variants), a first panel shows the paired excess with its CI on its own scale, where small
    effects that share the 0-1 axis of the rates become visible.

    Each model / backend / lens variant in ``summary`` gets one colour: the metric solid, its
    control dashed. Transcription uses position_rule ``after_uniqueness`` and also draws its
    ``pre_onset`` rate dotted (what the model predicted before the word); next_word ``last``.
    """
    variants = list(dict.fromkeys(map(tuple, summary[["model", "backend", "lens"]].to_numpy())))
    if not variants:
        raise ValueError("the summary is empty: nothing to plot")
    varying = [i for i in range(3) if len({v[i] for v in variants}) > 1]
    panels = [*pairs, ("speech_mass",)] if speech_mass else list(pairs)
    n_extra = int(excess is not None)
    fig = new_figure((5 * (len(panels) + n_extra), 4))
    axes = fig.subplots(1, len(panels) + n_extra, squeeze=False)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    if excess is not None:
        _excess_panel(axes[0][0], excess, variants, colors)
    for ax, panel in zip(axes[0][n_extra:], panels, strict=True):
        for c, variant in enumerate(variants):
            rows = summary[(summary[["model", "backend", "lens"]] == list(variant)).all(axis=1)]
            lines = list(zip(panel, ("-", "--"), strict=False))
            rules = [TRANSCRIPTION_RULE if m.startswith("transcription") else None for m in panel]
            if panel[0] == "transcription":
                lines.append(("transcription", ":"))
                rules.append("pre_onset")
            for (metric, style), rule in zip(lines, rules, strict=True):
                is_mass = metric == "speech_mass"
                rule = "any" if is_mass else (rule or "last")
                sel = _select(
                    rows,
                    metric,
                    None if is_mass else k,
                    "full" if is_mass else vocab,
                    rule,
                    "all" if is_mass else words,
                )
                sel = sel.sort_values("layer")
                color = colors[c % len(colors)]
                ax.plot(
                    sel["layer"],
                    sel["value"],
                    style,
                    marker="o",
                    ms=3,
                    color=color,
                )
                ax.fill_between(
                    sel["layer"],
                    sel["ci_low"],
                    sel["ci_high"],
                    color=color,
                    alpha=0.15,
                    linewidth=0,
                )
        name = panel[0] if panel[0] == "speech_mass" else f"{panel[0]}@{k} ({vocab} vocab)"
        if panel[0] == "transcription":
            name = f"transcription@{k} ({vocab} vocab, after the uniqueness point)"
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("layer (residual stream)")
        ax.set_ylabel("rate" if panel[0] != "speech_mass" else "probability on speech units")
        ax.set_ylim(-0.02, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    _legends(fig, [_label(v, varying) for v in variants], colors, pairs)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return save_figure(fig, out_png)


def _excess_panel(ax, excess: pd.DataFrame, variants: list, colors: list[str]) -> None:
    """Paired excess over the control per layer, one colour per variant, CI shaded."""
    for c, variant in enumerate(variants):
        rows = excess[(excess[["model", "backend", "lens"]] == list(variant)).all(axis=1)]
        rows = rows.sort_values("layer")
        if rows.empty:
            continue
        color = colors[c % len(colors)]
        ax.plot(rows["layer"], rows["value"], "-", marker="o", ms=3, color=color)
        ax.fill_between(rows["layer"], rows["ci_low"], rows["ci_high"], color=color, alpha=0.15,
                        linewidth=0)  # fmt: skip
    ax.axhline(0, color="0.3", lw=0.8)
    metric = str(excess["metric"].iloc[0]).replace("_", " ")
    rule = str(excess["position_rule"].iloc[0]).replace("_", " ")
    ax.set_title(f"{metric} ({rule}), 95% CI", fontsize=10)
    ax.set_xlabel("layer (residual stream)")
    ax.set_ylabel("excess over control")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _legends(fig, names: list[str], colors: list[str], pairs) -> None:
    """Below the panels: one colour per model / lens variant, one line style per role."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[i % len(colors)], marker="o", ms=3)
               for i in range(len(names))]  # fmt: skip
    styles = [Line2D([], [], color="0.3", ls=ls) for ls in ("-", "--", ":")]
    roles = ["metric", "its control", "transcription before the word (pre-onset)"]
    if not any(p[0] == "transcription" for p in pairs):
        styles, roles = styles[:2], roles[:2]
    fig.legend(handles, names, loc="lower left", ncol=min(len(names), 6), fontsize=8,
               frameon=False, bbox_to_anchor=(0.01, 0.0))  # fmt: skip
    fig.legend(styles, roles, loc="lower right", ncol=len(roles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.99, 0.0))  # fmt: skip


def _cell_text(token: str, width: int = 8) -> str:
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in token).strip()
    text = text or repr(token)
    return text if len(text) <= width else text[: width - 1] + "…"


def plot_token_heatmap(
    model,
    layout: TokenLayout,
    prompt: Prompt,
    lens: str | Lens,
    out_png: str | Path,
    *,
    chunk_size: int = 8192,
    remote: bool | str = False,
    max_positions: int = 48,
    tokenizer=None,
) -> Path:
    """Layer x position grid: the lens's top *text* token written in each cell, coloured by its
    probability. Positions past ``max_positions`` are cut with a warning."""
    tok = tokenizer if tokenizer is not None else tokenizer_of(model)
    ids, probs = lens_top_tokens(model, layout, prompt, lens, chunk_size=chunk_size, remote=remote)
    n_pos = ids.shape[1]
    if n_pos > max_positions:
        warnings.warn(f"heatmap shows the first {max_positions} of {n_pos} positions", stacklevel=2)
        ids, probs = ids[:, :max_positions], probs[:, :max_positions]
    n_layers, n_show = ids.shape
    flat = sorted(set(ids.flatten().tolist()) | set(prompt.input_ids[:n_show].tolist()))
    names = dict(zip(flat, tok.batch_decode([[i] for i in flat]), strict=True))
    fig = new_figure((max(6, 0.75 * n_show + 2), max(3, 0.45 * n_layers + 2)))
    ax = fig.subplots()
    image = ax.imshow(probs.numpy(), origin="lower", aspect="auto", cmap="viridis", vmin=0)
    fs = 7 if n_show <= 24 else 5
    for layer in range(n_layers):
        for pos in range(n_show):
            p = float(probs[layer, pos])
            color = "black" if p > 0.6 * float(probs.max()) else "white"
            ax.text(
                pos,
                layer,
                _cell_text(names[int(ids[layer, pos])]),
                ha="center",
                va="center",
                fontsize=fs,
                color=color,
            )
    labels = []
    for pos in range(n_show):
        w = int(prompt.token_word[pos])
        word = prompt.words[w] if w >= 0 else ""
        labels.append(f"{_cell_text(names[int(prompt.input_ids[pos])], 10)}\n{word}")
    ax.set_xticks(range(n_show), labels, rotation=90, fontsize=fs)
    ax.set_yticks(range(n_layers))
    ax.set_xlabel("input token / word")
    ax.set_ylabel("layer (residual stream)")
    name = lens if isinstance(lens, str) else lens.name
    ax.set_title(f"{name} lens: top text token per layer and position", fontsize=10)
    fig.colorbar(image, ax=ax, label="probability of the top text token")
    fig.tight_layout()
    return save_figure(fig, out_png)


__all__ = ["plot_phase_curves", "plot_token_heatmap"]


def plot_text_curves(
    curves: pd.DataFrame, out_png: str | Path, *, title: str | None = None
) -> Path:
    """Lens validation on text (:func:`speech_interp.lens.validate.text_lens_curves`): KL to the
    final distribution (log scale), current-token and next-token top-k rates, and top-1
    agreement per layer, one line per lens."""
    measures = [c for c in curves.columns if c.startswith(("current_token", "next_token"))]
    panels = ["kl_to_final", *measures, "top1_agreement"]
    fig = new_figure((3.2 * len(panels), 3.0))
    axes = fig.subplots(1, len(panels))
    for ax, measure in zip(axes, panels, strict=True):
        for lens, group in curves.groupby("lens", sort=False):
            group = group.sort_values("layer")
            ax.plot(group["layer"], group[measure], marker=".", label=str(lens))
        ax.set_title(measure.replace("_", " "), fontsize=9)
        ax.set_xlabel("stream (layer)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if measure == "kl_to_final":
            ax.set_yscale("symlog", linthresh=0.1)
            ax.set_ylabel("nats")
        else:
            ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_png)
