"""The one way figures are made and saved: matplotlib's Agg canvas, no pyplot state."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from speech_interp.artifacts import atomic_path


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure on its own Agg canvas."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_png: str | Path, *, tight: bool = False) -> Path:
    """Write ``fig`` as a PNG (120 dpi) atomically (:func:`speech_interp.artifacts.atomic_path`)."""
    out = Path(out_png)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight" if tight else None)
    return out


__all__ = ["new_figure", "save_figure"]
