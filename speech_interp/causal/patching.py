"""Exact activation patching (denoising) over layers x aligned positions, batched and resumable.

**Tasks** (:mod:`speech_interp.causal.tasks`): one per pair and metric.

**Cells** are (component, layer, position) with component in resid_pre / attn_out / mlp_out /
resid_post and position the aligned offset of :func:`speech_interp.data.align` (negative inside
the word, from its end; positive after it). Only positions that can change the metric are
patched: the word's aligned positions and, after it, those before the last read-out position.

**Value** (denoising): run the corrupted prompt with one cell replaced by the clean run's
activation at the aligned clean position; ``value = (patched - corrupt) / (clean - corrupt)``,
the normalised recovery (NaN when ``|clean - corrupt| < 1e-6``). ``patched``, ``clean_metric``
and ``corrupt_metric`` are kept beside it.

**Batching.** A batch holds copies of the corrupted prompt; row i patches cell i. The clean
activations of a task are read once. Cells are cut into batches of ``batch_size`` in a fixed
order, so a resumed sweep runs exactly the same batches. On a local nnsight model the corrupted
prompt is run once with its KV cache and residuals kept; each batch then computes only what its
patches can change: the tokens from its first patched or read-out position on (the earlier ones
from the cache), through the blocks from its lowest patched layer up (the blocks below are
skipped, their outputs taken from the kept run; :mod:`speech_interp.core.kept`). The same values
to float rounding; TransformerLens's bridge does not fill HF caches, so there every batch runs
the whole prompt.

**Resume** (:mod:`speech_interp.causal.checkpoint`): with ``out_dir``, every finished batch is
appended to ``patch_cells.log`` there; a rerun skips finished batches and the returned table is
the same as an uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import einops
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from speech_interp.causal.checkpoint import KEY, Checkpoint, checkpoint_batch_size
from speech_interp.causal.readouts import METRICS
from speech_interp.causal.tables import (
    EPS,
    recovery_rows,
    tidy_patch,
)
from speech_interp.causal.tasks import PatchTask, build_tasks, task_grid
from speech_interp.core.edits import COMPONENTS, Edit, capture, run_edited
from speech_interp.core.kept import KeptRun, keep_run, run_kept
from speech_interp.core.memory import model_device, plan_batch_size
from speech_interp.core.runs import RunContext, block_list, run_context
from speech_interp.data.pairs import Pair
from speech_interp.hooks import TokenLayout


@dataclass
class PatchResult:
    """``table``: one row per cell (``PATCH_COLUMNS`` + extras); ``skipped``: pair, metric, why."""

    table: pd.DataFrame
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)
    batch_size: int | None = None  # the batch size the sweep ran with


def cell_edits(grid: pd.DataFrame, clean_acts: dict, rows: Sequence[int]) -> list[Edit]:
    """Edits that patch grid row j's clean activation into batch row ``rows[j]``."""
    edits = []
    rows = np.asarray(rows)
    for (comp, layer), idx in grid.groupby(["component", "layer"], sort=False).indices.items():
        sub = grid.iloc[idx]
        act = clean_acts[(int(layer), comp)][0]
        values = act[torch.tensor(sub["clean_position"].to_numpy(dtype=np.int64))]
        positions = sub["corrupt_position"].to_numpy(dtype=np.int64, copy=True)
        edits.append(Edit.set(int(layer), comp, rows[idx], positions, values))
    return edits


def patched_metric(
    model, task: PatchTask, cells: pd.DataFrame, clean_acts: dict, *, remote: bool | str = False
) -> float:
    """The corrupted run's metric with *all* ``cells`` patched at once (one row)."""
    edits = cell_edits(cells, clean_acts, [0] * len(cells))
    return float(
        run_edited(model, task.corrupt_ids[None], edits, task.corrupt_readout, remote=remote)[0]
    )


def clean_run(model, task: PatchTask, sites, *, remote: bool | str = False):
    """Clean activations at ``sites`` and the clean and corrupted metrics of a task."""
    acts, clean = capture(
        model, task.clean_ids[None], list(sites), task.clean_readout, remote=remote
    )
    _, corrupt = capture(model, task.corrupt_ids[None], [], task.corrupt_readout, remote=remote)
    return acts, float(clean[0]), float(corrupt[0])


def patch_batch(
    model, task: PatchTask, grid: pd.DataFrame, clean_acts, remote, run: KeptRun | None = None
) -> np.ndarray:
    """Patched metrics of one batch (row j patches grid row j). With the corrupted prompt's kept
    ``run`` (:func:`speech_interp.core.kept.keep_run`), only what the patches can change is
    computed (:func:`speech_interp.core.kept.run_kept`); without, the whole prompt."""
    edits = cell_edits(grid, clean_acts, range(len(grid)))
    if run is not None:
        return run_kept(model, run, edits, task.corrupt_readout, len(grid)).numpy()
    ids = einops.repeat(task.corrupt_ids, "pos -> b pos", b=len(grid)).to(model_device(model))
    return run_edited(model, ids, edits, task.corrupt_readout, remote=remote).numpy()


def sweep_context(
    model, components: Sequence[str], layers, remote, tokenizer, model_id
) -> tuple[RunContext, list[int]]:
    """Run context and checked blocks of a patching or attribution sweep."""
    bad = [c for c in components if c not in COMPONENTS]
    if bad or not components:
        raise ValueError(f"components must be among {COMPONENTS}, got {list(components)}")
    ctx = run_context(model, remote, tokenizer, model_id)
    return ctx, block_list(layers, ctx.n_layers)


def patch_sweep(
    model,
    layout: TokenLayout,
    pairs: Sequence[Pair],
    *,
    metrics: Sequence[str] = METRICS,
    components: Sequence[str] = COMPONENTS,
    layers: Sequence[int] | None = None,
    batch_size: int | None = 64,
    remote: bool | str = False,
    out_dir: str | Path | None = None,
    model_id: str | None = None,
    progress: bool = True,
    tokenizer=None,
) -> PatchResult:
    """Exact denoising patching of every cell of every task (rules in the module docstring).

    Args:
        model: a TransformerLens bridge or an nnsight model (:func:`speech_interp.load`).
        layout: the model's token layout.
        pairs: clean / corrupted pairs (:func:`speech_interp.data.make_pairs`).
        metrics: what to read out (:data:`speech_interp.causal.readouts.METRICS`).
        components: components to patch, among ``resid_pre attn_out mlp_out resid_post``.
        layers: blocks to patch (default: all).
        batch_size: patched cells per forward pass (values do not depend on it); None: the
            largest power of two whose estimated memory fits in 80% of what is free on the
            model's device (:func:`speech_interp.core.memory.plan_batch_size`). A batch too
            large for the free memory fails before any forward pass, with the numbers.
        out_dir: directory of the resumable checkpoint (``patch_cells.log``); None: no checkpoint.
        remote, model_id, progress, tokenizer: as for every routine
            (:func:`speech_interp.core.runs.run_context`).

    Returns:
        :class:`PatchResult`: one row per cell (``PATCH_COLUMNS`` + extras) and the skipped tasks.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ctx, layers = sweep_context(model, components, layers, remote, tokenizer, model_id)
    backend, remote, model_id = ctx.backend, ctx.remote, ctx.model_id
    tasks, skipped = build_tasks(pairs, layout, ctx.tokenizer, metrics)
    if not tasks:
        reasons = _reasons(skipped)
        raise ValueError(f"no pair can be read out with metrics {list(metrics)}: {reasons}")
    if remote is True:  # the server's memory is not ours to measure
        batch_size = batch_size or 64
    else:
        if batch_size is None and out_dir is not None:  # resuming: the batches run before
            batch_size = checkpoint_batch_size(Path(out_dir))
        longest = max(len(t.corrupt_ids) for t in tasks)
        n_read = max(t.corrupt_readout.positions.numel() for t in tasks)
        batch_size = plan_batch_size(model, longest, n_read, batch_size)
    meta = {
        "model": model_id,
        "backend": backend,
        "kinds": list(metrics),  # the checkpoint's key since its first format
        "batch_size": batch_size,
        "components": list(components),
        "layers": layers,
        "pairs": [p.id for p in pairs],
    }
    ckpt = Checkpoint(out_dir, meta) if out_dir is not None else None
    plan = [(t, task_grid(t, layers, components)) for t in tasks]
    total = sum(len(g) for _, g in plan)
    frames = [] if ckpt is None else [ckpt.done]
    done_keys = set() if ckpt is None else ckpt.keys()
    with tqdm(total=total, desc="patch", unit="cell", disable=not progress) as bar:
        for task, grid in plan:
            chunks = [grid.iloc[i : i + batch_size] for i in range(0, len(grid), batch_size)]
            todo = [c for c in chunks if not _finished(task, c, done_keys)]
            bar.update(sum(len(c) for c in chunks) - sum(len(c) for c in todo))
            if not todo:
                continue
            sites = sorted(set(zip(grid["layer"], grid["component"], strict=True)))
            acts, clean, corrupt = clean_run(model, task, sites, remote=remote)
            run = keep_run(model, task.corrupt_ids, remote)
            for chunk in todo:
                patched = patch_batch(model, task, chunk, acts, remote, run)
                rows = recovery_rows(
                    chunk, model=model_id, backend=backend, method="exact", pair=task.pair,
                    metric=task.metric, patched=patched, clean=clean, corrupt=corrupt,
                )  # fmt: skip
                if ckpt is not None:
                    ckpt.append(rows)
                frames.append(rows)
                bar.update(len(chunk))
    # A batch cut short by a crash is run again whole: its cells already logged come twice.
    cells = pd.concat([f for f in frames if len(f)], ignore_index=True)
    table = tidy_patch(cells.drop_duplicates(subset=KEY, keep="last"), components)
    _warn_flat(table)
    return PatchResult(table, skipped, batch_size)


def _reasons(skipped: pd.DataFrame) -> str:
    return "; ".join(sorted(set(skipped["reason"]))) or "no pairs"


def _finished(task: PatchTask, chunk: pd.DataFrame, done: set) -> bool:
    return all(
        (task.pair, task.metric, c, int(la), int(p)) in done
        for c, la, p in zip(chunk["component"], chunk["layer"], chunk["position"], strict=True)
    )


def _warn_flat(table: pd.DataFrame) -> None:
    flat = table[table["value"].isna()][["pair", "metric"]].drop_duplicates()
    if len(flat):
        warnings.warn(
            f"{len(flat)} task(s) have clean and corrupted metrics closer than {EPS}; their "
            "normalised recovery is NaN (the swapped word does not change the read-out)",
            stacklevel=3,
        )


def summarize_patching(table: pd.DataFrame) -> pd.DataFrame:
    """Mean value over pairs per (model, backend, method, metric, component, layer, position)."""
    keys = ["model", "backend", "method", "metric", "component", "layer", "position"]
    return table.groupby(keys, sort=False)["value"].agg(["mean", "count"]).reset_index()


__all__ = [
    "PatchResult",
    "cell_edits",
    "clean_run",
    "patch_batch",
    "patch_sweep",
    "patched_metric",
    "summarize_patching",
    "sweep_context",
]
