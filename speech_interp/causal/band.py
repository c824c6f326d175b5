"""The one batch driver of the band interventions (ablation, substitution): a layer band of
residual streams, and a batch of copies of one prompt whose rows each edit a spoken word's
positions at every stream of the band.

Patching's cells are sites of their own (:mod:`speech_interp.causal.patching`); ablation and
substitution both act on a *band* (``"a-b"``, streams a..b in the lens numbering of
:mod:`speech_interp.core.runs`) and differ only in the edit (``Edit.project`` of a direction,
``Edit.add`` of a delta) and in which rows stay unedited; :func:`run_band_edits` takes both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from speech_interp.core.edits import Edit, Readout, run_edited, stream_site
from speech_interp.core.runs import band_label, stream_band


def band_streams(band: str | Sequence[int], n_layers: int) -> tuple[str, list[int]]:
    """The band's label (``"a-b"``) and its streams, checked against ``0..n_layers``."""
    lo, hi = stream_band(band, n_layers)
    return band_label((lo, hi)), list(range(lo, hi + 1))


def run_band_edits(
    model,
    ids: Int[Tensor, " pos"],
    readout: Readout,
    positions: Int[Tensor, " n"],
    vectors: Sequence[dict[int, Float[Tensor, " d"]]],
    streams: Sequence[int],
    n_layers: int,
    make: Callable[..., Edit],
    *,
    unedited: int = 0,
    remote: bool | str = False,
) -> Float[Tensor, " batch"]:
    """The metric of ``unedited + len(vectors)`` copies of ``ids`` in one pass: the first
    ``unedited`` rows run as they are, row ``unedited + r`` applies ``make`` (``Edit.project`` or
    ``Edit.add``) with ``vectors[r][stream]`` at ``positions`` of every stream."""
    n, P = len(vectors), len(positions)
    rows = torch.arange(unedited, unedited + n).repeat_interleave(P)
    pos = positions.repeat(n)
    edits = []
    for s in streams:
        v = torch.stack([vec[s] for vec in vectors]).repeat_interleave(P, dim=0)
        edits.append(make(*stream_site(s, n_layers), rows, pos, v))
    batch = ids[None].expand(unedited + n, -1).contiguous()
    return run_edited(model, batch, edits, readout, remote=remote)


def thirds(n_layers: int) -> list[str]:
    """Bands fixed before any result: the intermediate streams 1..L-1 split into three
    contiguous, near-equal bands (6 layers: 1-2, 3-4, 5-5)."""
    import numpy as np

    parts = np.array_split(np.arange(1, n_layers), 3)
    return [band_label((int(p[0]), int(p[-1]))) for p in parts if len(p)]


__all__ = ["band_streams", "run_band_edits", "thirds"]
