"""Figures for papers (matplotlib, Agg): lens phase curves and token heatmaps, patching heatmaps,
ablation-vs-control and attribution-vs-exact plots."""

from speech_interp.plotting.causal import (
    plot_ablation_bands,
    plot_attribution_scatter,
    plot_patching_heatmap,
)
from speech_interp.plotting.lens import plot_phase_curves, plot_token_heatmap

__all__ = [
    "plot_ablation_bands",
    "plot_attribution_scatter",
    "plot_patching_heatmap",
    "plot_phase_curves",
    "plot_token_heatmap",
]
