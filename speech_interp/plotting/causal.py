"""Figures of the causal tests: patching heatmaps, ablation against its random control, and
exact vs attribution patching. Drawn on matplotlib's Agg canvas (no pyplot state touched)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from speech_interp.core.edits import COMPONENTS
from speech_interp.plotting.figures import save_figure


def plot_patching_heatmap(
    table: pd.DataFrame,
    out_png: str | Path,
    *,
    metric: str = "speech",
    method: str = "exact",
    components: Sequence[str] = COMPONENTS,
    title: str | None = None,
) -> Path:
    """Mean normalised recovery over pairs, layer x aligned position, one panel per component."""
    sel = table[(table["metric"] == metric) & (table["method"] == method)]
    if sel.empty:
        raise ValueError(f"no {method} patching rows for metric {metric!r} to plot")
    comps = [c for c in components if c in set(sel["component"])]
    mean = sel.groupby(["component", "layer", "position"])["value"].mean()
    layers = np.sort(sel["layer"].unique())
    positions = np.sort(sel["position"].unique())
    finite = mean.to_numpy()[np.isfinite(mean.to_numpy())]
    vmax = float(np.abs(finite).max()) if finite.size else 1.0
    fig = Figure(figsize=(3.2 * len(comps) + 1, 0.45 * len(layers) + 2.4), layout="constrained")
    axes = fig.subplots(1, len(comps), squeeze=False)[0]
    for ax, comp in zip(axes, comps, strict=True):
        grid = np.full((len(layers), len(positions)), np.nan)
        sub = mean.loc[comp]
        for (layer, pos), v in sub.items():
            grid[np.searchsorted(layers, layer), np.searchsorted(positions, pos)] = v
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", origin="lower")
        ax.set_title(comp)
        ax.set_xticks(range(len(positions)), [f"{p:+d}" for p in positions], fontsize=7)
        ax.set_yticks(range(len(layers)), [str(la) for la in layers], fontsize=7)
    axes[0].set_ylabel("layer")
    fig.colorbar(im, ax=list(axes), label="normalised recovery", shrink=0.8)
    n_pairs = sel["pair"].nunique() if "pair" in sel else "?"
    fig.supxlabel(
        "aligned position (in the word: -1 = its last unit, -2 ...; after it: +1, +2 ...)"
    )
    fig.suptitle(title or f"{method} patching, {metric} metric, mean over {n_pairs} pairs")
    return save_figure(fig, out_png, tight=True)


def plot_ablation_bands(
    ablation: pd.DataFrame,
    out_png: str | Path,
    *,
    verdicts: dict | None = None,
    metric: str = "speech",
    title: str | None = None,
) -> Path:
    """One panel per band: the random directions' mean damage (histogram, 95th percentile
    dashed), the text direction's mean damage with its 95% CI over word types (shaded), the
    probe direction's mean damage when it was ablated, and the band's verdict in the panel title
    when ``verdicts`` (one model's verdict.json content, read on its own metric) is given."""
    from speech_interp.stats import bootstrap_ci

    bands = list(dict.fromkeys(ablation["band"]))
    if not bands:
        raise ValueError("the ablation table is empty: nothing to plot")
    verdicts = verdicts if verdicts and verdicts.get("metric", metric) == metric else {}
    verdict_of = {b["band"]: b["verdict"] for b in verdicts.get("bands", [])}
    fig = Figure(figsize=(4.2 * len(bands), 3.6))
    axes = fig.subplots(1, len(bands), squeeze=False)[0]
    for ax, band in zip(axes, bands, strict=True):
        sel = ablation[(ablation["band"] == band) & (ablation["metric"] == metric)]
        per_draw = sel[sel["direction"] == "random"].groupby("draw")["effect"].mean()
        ax.hist(per_draw.to_numpy(), bins=max(5, len(per_draw) // 2), color="0.7",
                label=f"random directions (n={len(per_draw)})")  # fmt: skip
        text = sel[sel["direction"] == "text"]
        if len(text):
            mean, lo, hi = bootstrap_ci(
                text["effect"].to_numpy(dtype=float), clusters=text["word"].str.lower().to_numpy()
            )
            ax.axvspan(lo, hi, color="C3", alpha=0.2, lw=0)
            ax.axvline(mean, color="C3", lw=2, label="text direction (95% CI)")
        probe = sel[sel["direction"] == "probe"]["effect"]
        if len(probe):
            ax.axvline(float(probe.mean()), color="C0", lw=2, label="probe direction")
        if len(per_draw):
            q95 = float(np.quantile(per_draw, 0.95))
            ax.axvline(q95, color="k", ls="--", lw=1, label="random: 95th pct")
        verdict = verdict_of.get(band)
        ax.set_title(f"streams {band}" + (f": {verdict}" if verdict else ""), fontsize=10)
        ax.set_xlabel(f"mean damage of the {metric} metric")
        ax.set_ylabel("directions")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_png, tight=True)


def plot_attribution_scatter(
    exact: pd.DataFrame, attribution: pd.DataFrame, out_png: str | Path, *, title: str = ""
) -> Path:
    """Exact vs attribution normalised recovery, one point per cell, coloured by component."""
    keys = ["pair", "metric", "component", "layer", "position"]
    merged = exact[keys + ["value"]].merge(
        attribution[keys + ["value"]], on=keys, suffixes=("_exact", "_attr")
    )
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    for i, comp in enumerate(COMPONENTS):
        g = merged[merged["component"] == comp]
        if len(g):
            ax.scatter(g["value_exact"], g["value_attr"], s=8, color=f"C{i}", label=comp)
    ax.axline((0, 0), slope=1, color="0.5", lw=1, ls=":")
    ax.set_xlabel("exact patching")
    ax.set_ylabel("attribution patching")
    ax.legend(fontsize=8)
    ax.set_title(title or "exact vs attribution (normalised recovery)")
    return save_figure(fig, out_png, tight=True)


__all__ = [
    "plot_ablation_bands",
    "plot_attribution_scatter",
    "plot_patching_heatmap",
]
