"""Exact activation patching (denoising) over layers x aligned positions, batched and resumable.

**Tasks.** Every pair (:mod:`speech_interp.pairs`) gives one task per metric kind:

- ``speech``: the full prompts; the metric is the sum of log-probs of the *next* word's units
  (the clean continuation, identical in both prompts) given everything before each unit. Needs a
  spoken next word.
- ``text``: both prompts cut after the differing word, plus the text marker (a switch to text);
  the metric is the log-prob of the next word's text target token (rule in
  :mod:`speech_interp.targets`) at the marker. Needs markers and a target.

A pair lacking what a kind needs is skipped for that kind (listed in ``PatchResult.skipped``).

**Cells** are (component, layer, position) with component in resid_pre / attn_out / mlp_out /
resid_post and position the aligned offset of :func:`speech_interp.pairs.align` (negative inside
the word, from its end; positive after it). Only positions that can change the metric are
patched: the word's aligned positions and, after it, those before the last read-out position.

**Value** (denoising): run the corrupted prompt with one cell replaced by the clean run's
activation at the aligned clean position; ``value = (patched - corrupt) / (clean - corrupt)``,
the normalised recovery (NaN when ``|clean - corrupt| < 1e-6``). ``patched``, ``clean_metric``
and ``corrupt_metric`` are kept beside it.

**Batching.** A batch holds copies of the corrupted prompt; row i patches cell i. The clean
activations of a task are read once. Cells are cut into batches of ``batch_size`` in a fixed
order, so a resumed sweep runs exactly the same batches.

**Resume.** With ``out_dir``, every finished batch is appended to ``patch_cells.csv`` there
(``patch_checkpoint.json`` records what the sweep was run with); a rerun skips finished batches
and the returned table is the same as an uninterrupted run's.
"""

from __future__ import annotations

import json
import warnings
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

from speech_interp.edits import COMPONENTS, Edit, Readout, capture, run_edited
from speech_interp.hooks import TokenLayout
from speech_interp.models import RunContext, run_context
from speech_interp.pairs import Pair, align, validate_pair
from speech_interp.residuals import n_layers
from speech_interp.targets import TargetResolver

PATCH_COLUMNS = ["model", "backend", "method", "layer", "position", "component", "value"]
EXTRA_COLUMNS = [
    "pair",
    "metric",
    "patched",
    "clean_metric",
    "corrupt_metric",
    "clean_position",
    "corrupt_position",
]
KINDS = ("speech", "text")
KEY = ["pair", "metric", "component", "layer", "position"]
CHECKPOINT, CHECKPOINT_META = "patch_cells.csv", "patch_checkpoint.json"
EPS = 1e-6


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


def build_tasks(
    pairs: Sequence[Pair], layout: TokenLayout, tokenizer, kinds: Sequence[str] = KINDS
) -> tuple[list[PatchTask], pd.DataFrame]:
    """Tasks for every pair and kind (rules in the module docstring) and the skipped ones."""
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"metric kinds must be among {KINDS}, got {list(kinds)}")
    resolver = TargetResolver(tokenizer, layout)
    tasks, skipped = [], []
    for pair in pairs:
        w = validate_pair(pair.clean, pair.corrupt)
        cp, rp = pair.clean.to_prompt(layout, tokenizer), pair.corrupt.to_prompt(layout, tokenizer)
        al = align(cp, rp, w)
        nxt = pair.clean.words[w + 1] if w + 1 < len(pair.clean.words) else None
        shift = al.corrupt_last - al.clean_last
        for kind in kinds:
            why = _why_not(kind, nxt, layout, resolver)
            if why:
                skipped.append({"pair": pair.id, "metric": kind, "reason": why})
                continue
            if kind == "speech":
                tgt_pos = cp.word_positions[w + 1]
                c_ids, r_ids = cp.input_ids, rp.input_ids
                targets = c_ids[tgt_pos]
                cells = al.cells(max_after=len(tgt_pos) - 1)
            else:
                marker = torch.tensor([layout.text_marker_id])
                c_ids = torch.cat([cp.input_ids[: al.clean_last + 1], marker])
                r_ids = torch.cat([rp.input_ids[: al.corrupt_last + 1], marker])
                tgt_pos = torch.tensor([al.clean_last + 2])  # one past the marker
                targets = torch.tensor([resolver(nxt.word).token_id])
                cells = al.cells(max_after=1)
            read = (tgt_pos - 1).long()
            tasks.append(
                PatchTask(
                    pair.id,
                    kind,
                    c_ids,
                    r_ids,
                    Readout.same(1, read, targets),
                    Readout.same(1, read + shift, targets),
                    cells,
                )
            )
    return tasks, pd.DataFrame(skipped, columns=["pair", "metric", "reason"])


def _why_not(kind, nxt, layout, resolver) -> str | None:
    if nxt is None:
        return "the differing word is the utterance's last word (no next word to read out)"
    if kind == "speech" and nxt.modality != "speech":
        return f"the next word {nxt.word!r} is not spoken"
    if kind == "text":
        if layout.text_marker_id is None:
            return f"family {layout.spec.name!r} has no text marker to switch to text"
        if not resolver(nxt.word).found:
            return f"the next word {nxt.word!r} has no text target token"
    return None


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


def _run_batch(model, task: PatchTask, grid: pd.DataFrame, clean_acts, remote) -> np.ndarray:
    """Patched metrics of one batch (row j patches grid row j)."""
    ids = einops.repeat(task.corrupt_ids, "pos -> b pos", b=len(grid))
    edits = cell_edits(grid, clean_acts, range(len(grid)))
    return run_edited(model, ids, edits, task.corrupt_readout, remote=remote).numpy()


def check_layers(model, layers: Sequence[int] | None, *, n: int | None = None) -> list[int]:
    """All blocks when None; else the given blocks, each checked against the model (or ``n``)."""
    L = n_layers(model) if n is None else n
    if layers is None:
        return list(range(L))
    layers = [int(x) for x in layers]
    bad = [x for x in layers if not 0 <= x < L]
    if bad or not layers:
        raise ValueError(f"layers {bad or layers} out of range for a {L}-layer model (0..{L - 1})")
    return layers


def sweep_setup(
    model, components: Sequence[str], layers, remote, tokenizer, model_id
) -> tuple[RunContext, list[int]]:
    """Checked run context and blocks of a patching or attribution sweep."""
    bad = [c for c in components if c not in COMPONENTS]
    if bad or not components:
        raise ValueError(f"components must be among {COMPONENTS}, got {list(components)}")
    return run_context(model, remote, tokenizer, model_id), check_layers(model, layers)


def patch_sweep(
    model,
    layout: TokenLayout,
    pairs: Sequence[Pair],
    *,
    kinds: Sequence[str] = KINDS,
    components: Sequence[str] = COMPONENTS,
    layers: Sequence[int] | None = None,
    batch_size: int = 64,
    remote: bool | str = False,
    out_dir: str | Path | None = None,
    model_id: str | None = None,
    progress: bool = True,
    tokenizer=None,
) -> PatchResult:
    """Exact denoising patching of every cell of every task (rules in the module docstring)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    (backend, remote, tok, model_id), layers = sweep_setup(
        model, components, layers, remote, tokenizer, model_id
    )
    tasks, skipped = build_tasks(pairs, layout, tok, kinds)
    if not tasks:
        raise ValueError(f"no pair can be read out with metrics {list(kinds)}: {_reasons(skipped)}")
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
            for chunk in todo:
                patched = _run_batch(model, task, chunk, acts, remote)
                rows = _rows(chunk, task, patched, clean, corrupt, model_id, backend)
                if ckpt is not None:
                    ckpt.append(rows)
                frames.append(rows)
                bar.update(len(chunk))
    table = tidy(pd.concat([f for f in frames if len(f)], ignore_index=True), components)
    _warn_flat(table)
    return PatchResult(table, skipped)


def _reasons(skipped: pd.DataFrame) -> str:
    return "; ".join(sorted(set(skipped["reason"]))) or "no pairs"


def _finished(task: PatchTask, chunk: pd.DataFrame, done: set) -> bool:
    return all(
        (task.pair, task.kind, c, int(la), int(p)) in done
        for c, la, p in zip(chunk["component"], chunk["layer"], chunk["position"], strict=True)
    )


def _rows(chunk, task, patched, clean, corrupt, model_id, backend) -> pd.DataFrame:
    patched = patched.astype(np.float64)  # float64 throughout: the CSV round trip is exact
    denom = clean - corrupt
    value = (patched - corrupt) / denom if abs(denom) >= EPS else np.full(len(chunk), np.nan)
    rows = chunk.copy()
    rows.insert(0, "metric", task.kind)
    rows.insert(0, "pair", task.pair)
    rows.insert(0, "method", "exact")
    rows.insert(0, "backend", backend)
    rows.insert(0, "model", model_id)
    rows["value"] = value
    rows["patched"] = patched
    rows["clean_metric"], rows["corrupt_metric"] = clean, corrupt
    return rows


def tidy(frame: pd.DataFrame, components: Sequence[str] = COMPONENTS) -> pd.DataFrame:
    """Fixed column order, dtypes and row order (pair, metric, component, layer, position)."""
    frame = frame[PATCH_COLUMNS + EXTRA_COLUMNS].copy()
    for col in ("layer", "position", "clean_position", "corrupt_position"):
        frame[col] = frame[col].astype(np.int64)
    for col in ("value", "patched", "clean_metric", "corrupt_metric"):
        frame[col] = frame[col].astype(np.float64)
    order = {c: i for i, c in enumerate(components)}
    frame = frame.assign(_c=frame["component"].map(order))
    frame = frame.sort_values(["pair", "metric", "_c", "layer", "position"], kind="stable")
    return frame.drop(columns="_c").reset_index(drop=True)


def _warn_flat(table: pd.DataFrame) -> None:
    flat = table[table["value"].isna()][["pair", "metric"]].drop_duplicates()
    if len(flat):
        warnings.warn(
            f"{len(flat)} task(s) have clean and corrupted metrics closer than {EPS}; their "
            "normalised recovery is NaN (the swapped word does not change the read-out)",
            stacklevel=3,
        )


class Checkpoint:
    """Append-only CSV of finished cells plus the sweep settings it belongs to."""

    def __init__(self, out_dir: str | Path, meta: dict):
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
            meta_path.write_text(json.dumps(meta, indent=2) + "\n")
            self.path.unlink(missing_ok=True)
        self.done = self._read()

    def _read(self) -> pd.DataFrame:
        if not self.path.exists():
            return pd.DataFrame(columns=PATCH_COLUMNS + EXTRA_COLUMNS)
        frame = pd.read_csv(self.path, on_bad_lines="skip", float_precision="round_trip")
        frame = frame.dropna(subset=KEY + ["patched", "corrupt_position"])  # a cut-off last line
        return frame.drop_duplicates(subset=KEY, keep="last")

    def keys(self) -> set:
        d = self.done
        cols = [d[c] for c in ("pair", "metric", "component")]
        cols += [d["layer"].astype(int), d["position"].astype(int)]
        return set(zip(*cols, strict=True))

    def append(self, rows: pd.DataFrame) -> None:
        header = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a") as fh:
            rows[PATCH_COLUMNS + EXTRA_COLUMNS].to_csv(fh, header=header, index=False)
            fh.flush()


def summarize_patching(table: pd.DataFrame) -> pd.DataFrame:
    """Mean value over pairs per (model, backend, method, metric, component, layer, position)."""
    keys = ["model", "backend", "method", "metric", "component", "layer", "position"]
    return table.groupby(keys, sort=False)["value"].agg(["mean", "count"]).reset_index()


__all__ = [
    "EXTRA_COLUMNS",
    "KINDS",
    "PATCH_COLUMNS",
    "PatchResult",
    "PatchTask",
    "build_tasks",
    "cell_edits",
    "check_layers",
    "clean_run",
    "patch_sweep",
    "patched_metric",
    "summarize_patching",
    "task_grid",
    "tidy",
]
