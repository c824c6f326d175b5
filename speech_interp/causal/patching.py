"""Exact activation patching (denoising) over layers x aligned positions, batched and resumable.

**Tasks.** Every pair (:mod:`speech_interp.data.pairs`) gives one task per metric kind: both
prompts cut after the differing word, then the clean next word read out the way the kind says
(:mod:`speech_interp.causal.readouts`: ``speech``, its units; ``text``, its text target after a
switch to text). The read-out is identical in both prompts. A pair lacking what a kind needs is
skipped for that kind (listed in ``PatchResult.skipped``).

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

**Resume.** With ``out_dir``, every finished batch is appended to ``patch_cells.log`` there
(``patch_checkpoint.json`` records what the sweep was run with); a rerun skips finished batches
and the returned table is the same as an uninterrupted run's, bit for bit. The log holds one
cell per line, ``<crc32 of the JSON, 8 hex digits> <JSON record>``, written with one ``write``
per batch, flushed and fsynced: a run killed at any byte leaves at most one last line without
its newline or with a checksum that fails; reading stops there, and the file is cut back to the
last good line before anything is appended (so a partial line is never continued). JSON floats
round-trip exactly, so resumed values are the original ones.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import einops
import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.causal.readouts import KINDS, check_kinds, continuation
from speech_interp.causal.tables import (
    EPS,
    EXTRA_COLUMNS,
    PATCH_COLUMNS,
    recovery_rows,
    tidy_patch,
)
from speech_interp.core.edits import COMPONENTS, Edit, Readout, capture, run_edited
from speech_interp.core.memory import model_device, plan_batch_size
from speech_interp.core.residuals import no_logits_kwargs
from speech_interp.core.runs import RunContext, block_list, run_context
from speech_interp.data.pairs import Pair, align, validate_pair
from speech_interp.data.targets import TargetResolver
from speech_interp.hooks import TokenLayout
from speech_interp.models import backend_of, hf_model

KEY = ["pair", "metric", "component", "layer", "position"]
CHECKPOINT, CHECKPOINT_META = "patch_cells.log", "patch_checkpoint.json"


@dataclass
class PatchTask:
    """One pair under one metric kind: both prompts, read-outs and the patchable positions."""

    pair: str
    kind: str
    clean_ids: Int[Tensor, " clean_pos"]
    corrupt_ids: Int[Tensor, " corrupt_pos"]
    clean_readout: Readout
    corrupt_readout: Readout
    cells: pd.DataFrame  # offset, clean_position, corrupt_position


@dataclass
class PatchResult:
    """``table``: one row per cell (``PATCH_COLUMNS`` + extras); ``skipped``: pair, kind, why."""

    table: pd.DataFrame
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)
    batch_size: int | None = None  # the batch size the sweep ran with


def build_tasks(
    pairs: Sequence[Pair], layout: TokenLayout, tokenizer, kinds: Sequence[str] = KINDS
) -> tuple[list[PatchTask], pd.DataFrame]:
    """Tasks for every pair and kind (rules in the module docstring) and the skipped ones."""
    kinds = check_kinds(kinds)
    resolver = TargetResolver(tokenizer, layout)
    tasks, skipped = [], []
    for pair in pairs:
        w = validate_pair(pair.clean, pair.corrupt)
        cp, rp = pair.clean.to_prompt(layout, tokenizer), pair.corrupt.to_prompt(layout, tokenizer)
        al = align(cp, rp, w)
        nxt = pair.clean.words[w + 1] if w + 1 < len(pair.clean.words) else None
        for kind in kinds:
            clean = continuation(cp.input_ids[: al.clean_last + 1], nxt, kind, layout, resolver)
            if isinstance(clean, str):
                skipped.append({"pair": pair.id, "metric": kind, "reason": clean})
                continue
            corrupt = continuation(rp.input_ids[: al.corrupt_last + 1], nxt, kind, layout, resolver)
            n_read = clean[1].positions.shape[1]
            cells = al.cells(max_after=n_read - 1 if kind == "speech" else 1)
            tasks.append(
                PatchTask(pair.id, kind, clean[0], corrupt[0], clean[1], corrupt[1], cells)
            )
    return tasks, pd.DataFrame(skipped, columns=["pair", "metric", "reason"])


def task_grid(task: PatchTask, layers: Sequence[int], components: Sequence[str]) -> pd.DataFrame:
    """Every (component, layer, position) cell of a task, in the fixed sweep order."""
    rows = [
        (comp, layer, int(c.offset), int(c.clean_position), int(c.corrupt_position))
        for comp in components
        for layer in layers
        for c in task.cells.itertuples()
    ]
    cols = ["component", "layer", "position", "clean_position", "corrupt_position"]
    return pd.DataFrame(rows, columns=cols)


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
            batch_size = _checkpoint_batch_size(Path(out_dir))
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


def _checkpoint_batch_size(out_dir: Path) -> int | None:
    """The batch size of the sweep checkpointed in ``out_dir`` (None: no checkpoint)."""
    meta = out_dir / CHECKPOINT_META
    if not (meta.exists() and (out_dir / CHECKPOINT).exists()):
        return None
    return json.loads(meta.read_text()).get("batch_size")


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


class Checkpoint:
    """Append-only, checksummed log of finished cells plus the sweep settings it belongs to
    (format and crash rule in the module docstring)."""

    COLUMNS = PATCH_COLUMNS + EXTRA_COLUMNS

    def __init__(self, out_dir: str | Path, meta: dict):
        from speech_interp.artifacts import write_text

        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path, meta_path = self.dir / CHECKPOINT, self.dir / CHECKPOINT_META
        if meta_path.exists() and self.path.exists():
            old = json.loads(meta_path.read_text())
            if old != meta:
                diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
                raise ValueError(
                    f"{self.path} holds cells of a different sweep (differs in {diff}); "
                    "use another output directory or delete the checkpoint to start over"
                )
        else:
            self.path.unlink(missing_ok=True)
            write_text(meta_path, json.dumps(meta, indent=2) + "\n")
        self.done = self._read()

    @staticmethod
    def _line(record: dict) -> bytes:
        body = json.dumps(record, separators=(",", ":")).encode()
        return b"%08x %s\n" % (zlib.crc32(body), body)

    def _read(self) -> pd.DataFrame:
        """Every intact record; the file is cut back to the end of the last one."""
        records, good = [], 0
        data = self.path.read_bytes() if self.path.exists() else b""
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
                break
            body = line[9:-1]
            if line[:8] != b"%08x" % zlib.crc32(body):
                break
            records.append(json.loads(body))
            good += len(line)
        if good < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        frame = pd.DataFrame(records, columns=self.COLUMNS)
        return frame.drop_duplicates(subset=KEY, keep="last")

    def keys(self) -> set:
        d = self.done
        cols = [d[c] for c in ("pair", "metric", "component")]
        cols += [d["layer"].astype(int), d["position"].astype(int)]
        return set(zip(*cols, strict=True))

    def append(self, rows: pd.DataFrame) -> None:
        """Append a finished batch: one write, flushed and fsynced."""
        records = rows[self.COLUMNS].to_dict(orient="records")
        blob = b"".join(self._line(_plain(r)) for r in records)
        with self.path.open("ab") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())


def _plain(record: dict) -> dict:
    """numpy scalars as Python numbers (exact: float64 -> float)."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}


def summarize_patching(table: pd.DataFrame) -> pd.DataFrame:
    """Mean value over pairs per (model, backend, method, metric, component, layer, position)."""
    keys = ["model", "backend", "method", "metric", "component", "layer", "position"]
    return table.groupby(keys, sort=False)["value"].agg(["mean", "count"]).reset_index()


__all__ = [
    "PatchResult",
    "PatchTask",
    "build_tasks",
    "cell_edits",
    "clean_run",
    "corrupt_run",
    "patch_batch",
    "patch_sweep",
    "patched_metric",
    "summarize_patching",
    "sweep_context",
    "task_grid",
]
