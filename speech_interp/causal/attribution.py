"""Attribution patching: the whole exact-patching grid estimated from 2 forwards + 1 backward.

For a task (:mod:`speech_interp.causal.patching`), one clean forward gives the clean
activations, one corrupted forward plus one backward gives the corrupted activations and the
gradient ``g`` of the corrupted metric with respect to each of them. The first-order estimate
of patching cell (component, layer, offset) is
``(a_clean[clean_position] - a_corrupt[corrupt_position]) . g[corrupt_position]``, reported as
normalised recovery (divided by ``clean - corrupt``) under
``method="attribution"``, with the same cells and columns as the exact sweep.

``resid_pre`` of block l > 0 is the same tensor as ``resid_post`` of block l - 1, so its gradient
and activations are taken from there.

:func:`rank_agreement` gives Spearman's rank correlation between the two methods (average ranks
for ties, computed with pandas), overall and per metric and component.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from speech_interp.causal.patching import PatchResult, sweep_context
from speech_interp.causal.readouts import METRICS
from speech_interp.causal.tables import recovery_rows, tidy_patch
from speech_interp.causal.tasks import PatchTask, build_tasks, task_grid
from speech_interp.core.edits import COMPONENTS, capture, gradients
from speech_interp.core.residuals import n_layers
from speech_interp.data.pairs import Pair
from speech_interp.hooks import TokenLayout


def _grad_sites(L: int) -> list[tuple[int, str]]:
    """Distinct tensors: resid_pre of block 0, then attn_out, mlp_out, resid_post of each."""
    return [(0, "resid_pre")] + [(la, c) for la in range(L) for c in COMPONENTS[1:]]


def _source(site: tuple[int, str]) -> tuple[int, str]:
    layer, comp = site
    return (layer - 1, "resid_post") if comp == "resid_pre" and layer > 0 else site


def attribute_task(model, task: PatchTask, grid: pd.DataFrame, *, remote: bool | str = False):
    """Attribution estimate of every grid cell: (patched estimate, clean, corrupt)."""
    L = n_layers(model)
    sites = _grad_sites(L)
    clean_acts, clean = capture(
        model, task.clean_ids[None], sites, task.clean_readout, remote=remote
    )
    clean = float(clean[0])
    acts, grads, corrupt = gradients(
        model, task.corrupt_ids[None], sites, task.corrupt_readout, remote=remote
    )
    corrupt = float(corrupt[0])
    est = np.empty(len(grid))
    for (comp, layer), idx in grid.groupby(["component", "layer"], sort=False).indices.items():
        src = _source((int(layer), comp))
        sub = grid.iloc[idx]
        cpos = torch.tensor(sub["clean_position"].to_numpy(dtype=np.int64))
        rpos = torch.tensor(sub["corrupt_position"].to_numpy(dtype=np.int64))
        delta = clean_acts[src][0, cpos].float() - acts[src][0, rpos].float()
        est[idx] = (delta * grads[src][0, rpos].float()).sum(-1).cpu().numpy()
    return corrupt + est, clean, corrupt


def attribution_sweep(
    model,
    layout: TokenLayout,
    pairs: Sequence[Pair],
    *,
    metrics: Sequence[str] = METRICS,
    components: Sequence[str] = COMPONENTS,
    layers: Sequence[int] | None = None,
    remote: bool | str = False,
    model_id: str | None = None,
    progress: bool = True,
    tokenizer=None,
) -> PatchResult:
    """Attribution patching of the cells :func:`~speech_interp.causal.patch_sweep` patches.

    Takes the arguments of :func:`~speech_interp.causal.patch_sweep` but ``batch_size`` and
    ``out_dir`` (one forward and backward per task).

    Returns:
        :class:`~speech_interp.causal.patching.PatchResult` with ``method="attribution"`` rows.
    """
    ctx, layers = sweep_context(model, components, layers, remote, tokenizer, model_id)
    tasks, skipped = build_tasks(pairs, layout, ctx.tokenizer, metrics)
    if not tasks:
        raise ValueError(f"no pair can be read out with metrics {list(metrics)}")
    frames = []
    for task in tqdm(tasks, desc="attribution", disable=not progress):
        grid = task_grid(task, layers, components)
        patched, clean, corrupt = attribute_task(model, task, grid, remote=ctx.remote)
        frames.append(
            recovery_rows(
                grid, model=ctx.model_id, backend=ctx.backend, method="attribution",
                pair=task.pair, metric=task.metric, patched=patched, clean=clean, corrupt=corrupt,
            )
        )  # fmt: skip
    return PatchResult(tidy_patch(pd.concat(frames, ignore_index=True), components), skipped)


def _spearman(a: pd.Series, b: pd.Series) -> float:
    ok = a.notna() & b.notna()
    if ok.sum() < 3:
        return float("nan")
    ra, rb = a[ok].rank(), b[ok].rank()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def rank_agreement(exact: pd.DataFrame, attribution: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of exact vs attribution values over matching cells.

    Rows: ``metric`` and ``component`` ("all" for pooled) with ``spearman`` and ``n`` cells.
    """
    keys = ["model", "backend", "pair", "metric", "component", "layer", "position"]
    merged = exact[keys + ["value"]].merge(
        attribution[keys + ["value"]], on=keys, suffixes=("_exact", "_attr")
    )
    if merged.empty:
        raise ValueError("no cells in common between the exact and attribution tables")
    rows = []
    groups = [("all", "all", merged)]
    groups += [(m, "all", g) for m, g in merged.groupby("metric")]
    groups += [(m, c, g) for (m, c), g in merged.groupby(["metric", "component"])]
    for metric, comp, g in groups:
        ok = g["value_exact"].notna() & g["value_attr"].notna()
        rho = _spearman(g["value_exact"], g["value_attr"])
        rows.append({"metric": metric, "component": comp, "spearman": rho, "n": int(ok.sum())})
    return pd.DataFrame(rows)


__all__ = ["attribute_task", "attribution_sweep", "rank_agreement"]
