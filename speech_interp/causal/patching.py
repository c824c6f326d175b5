"""Exact activation patching (denoising) over layers x aligned positions, batched and resumable.

**Tasks** (:mod:`speech_interp.causal.tasks`): one per pair and metric kind.

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
skipped, their outputs taken from the kept run). The same values to float rounding;
TransformerLens's bridge does not fill HF caches, so there every batch runs the whole prompt.

**Resume** (:mod:`speech_interp.causal.checkpoint`): with ``out_dir``, every finished batch is
appended to ``patch_cells.log`` there; a rerun skips finished batches and the returned table is
the same as an uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import einops
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.causal.checkpoint import KEY, Checkpoint, checkpoint_batch_size
from speech_interp.causal.readouts import KINDS
from speech_interp.causal.tables import (
    EPS,
    recovery_rows,
    tidy_patch,
)
from speech_interp.causal.tasks import PatchTask, build_tasks, task_grid
from speech_interp.core.edits import COMPONENTS, Edit, Readout, capture, run_edited
from speech_interp.core.memory import model_device, plan_batch_size
from speech_interp.core.residuals import no_logits_kwargs
from speech_interp.core.runs import RunContext, block_list, run_context
from speech_interp.data.pairs import Pair
from speech_interp.hooks import TokenLayout
from speech_interp.models import backend_of, hf_model


@dataclass
class PatchResult:
    """``table``: one row per cell (``PATCH_COLUMNS`` + extras); ``skipped``: pair, kind, why."""

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


@dataclass
class CorruptRun:
    """The unpatched corrupted run of a task on a local nnsight model: its KV cache and every
    block's input (``resid[l]`` is block l's input, ``resid[L]`` the last block's output)."""

    cache: object  # an HF cache of the whole corrupted prompt
    resid: tuple[Tensor, ...]  # [1, pos, d] each


def corrupt_run(model, task: PatchTask, remote) -> CorruptRun | None:
    """The corrupted prompt run once with its cache and residuals kept; None where batches must
    run the whole prompt through every block (TransformerLens, whose bridge does not fill HF
    caches; remote runs)."""
    if remote or backend_of(model) != "nnsight":
        return None
    with torch.no_grad():  # its logits are not read: the last position's only
        out = hf_model(model)(
            task.corrupt_ids[None], use_cache=True, output_hidden_states=True,
            **no_logits_kwargs(model),
        )  # fmt: skip
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if cache is None or cache.get_seq_length() != len(task.corrupt_ids):
        return None
    return CorruptRun(cache, tuple(h.detach() for h in out.hidden_states))


def patch_batch(
    model, task: PatchTask, grid: pd.DataFrame, clean_acts, remote, run: CorruptRun | None = None
) -> np.ndarray:
    """Patched metrics of one batch (row j patches grid row j). With the corrupted ``run``, no
    patch can change the tokens before the batch's first patched or read-out position, nor the
    blocks below its lowest patched layer: those tokens come from the cache, those blocks are
    skipped (their output is the corrupted run's), and only the rest is computed."""
    edits = cell_edits(grid, clean_acts, range(len(grid)))
    b = len(grid)
    device = model_device(model)
    if run is None:
        ids = einops.repeat(task.corrupt_ids, "pos -> b pos", b=b).to(device)
        return run_edited(model, ids, edits, task.corrupt_readout, remote=remote).numpy()
    r = task.corrupt_readout
    start = min(int(grid["corrupt_position"].min()), int(r.positions.min()))
    first = int(grid["layer"].min())
    cache = None
    if start > 0:
        cache = copy.deepcopy(run.cache)
        cache.crop(start - len(task.corrupt_ids))  # negative: drop that many from the end
        cache.batch_repeat_interleave(b)
    for e in edits:
        e.positions = e.positions - start
    # a skipped block's output, as the blocks return it; the input of the first block run is a
    # copy (edits write into it), the others are views
    skip = {i: einops.repeat(run.resid[i + 1][:, start:], "1 pos d -> b pos d", b=b)
            for i in range(first)}  # fmt: skip
    if first:
        skip[first - 1] = skip[first - 1].contiguous()
    ids = einops.repeat(task.corrupt_ids[start:], "pos -> b pos", b=b).to(device)
    readout = Readout(r.positions - start, r.targets, r.weights)
    return run_edited(model, ids, edits, readout, prefix_cache=cache, skip_blocks=skip).numpy()


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
    kinds: Sequence[str] = KINDS,
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
        kinds: metric kinds to read out (:data:`speech_interp.causal.readouts.KINDS`).
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
    tasks, skipped = build_tasks(pairs, layout, ctx.tokenizer, kinds)
    if not tasks:
        raise ValueError(f"no pair can be read out with metrics {list(kinds)}: {_reasons(skipped)}")
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
        "kinds": list(kinds),
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
            run = corrupt_run(model, task, remote)
            for chunk in todo:
                patched = patch_batch(model, task, chunk, acts, remote, run)
                rows = recovery_rows(
                    chunk, model=model_id, backend=backend, method="exact", pair=task.pair,
                    metric=task.kind, patched=patched, clean=clean, corrupt=corrupt,
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
        (task.pair, task.kind, c, int(la), int(p)) in done
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
    "corrupt_run",
    "patch_batch",
    "patch_sweep",
    "patched_metric",
    "summarize_patching",
    "sweep_context",
]
