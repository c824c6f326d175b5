"""Patching tasks: a pair under one metric, its two prompts, read-outs and patchable cells.

**Tasks.** Every pair (:mod:`speech_interp.data.pairs`) gives one task per metric: both prompts
cut after the differing word, then the clean next word read out the way the metric says
(:func:`speech_interp.causal.readouts.read_outs`: ``speech``, its units; ``text``, its text
target after a switch to text). The read-out is identical in both prompts. A pair lacking what a
metric needs is skipped for that metric (listed in ``PatchResult.skipped``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from jaxtyping import Int
from torch import Tensor

from speech_interp.causal.readouts import METRICS, check_metrics, read_outs
from speech_interp.core.edits import Readout
from speech_interp.data.pairs import Pair, align, validate_pair
from speech_interp.data.targets import TargetResolver
from speech_interp.hooks import TokenLayout


@dataclass
class PatchTask:
    """One pair under one metric: both prompts, read-outs and the patchable positions."""

    pair: str
    metric: str
    clean_ids: Int[Tensor, " clean_pos"]
    corrupt_ids: Int[Tensor, " corrupt_pos"]
    clean_readout: Readout
    corrupt_readout: Readout
    cells: pd.DataFrame  # offset, clean_position, corrupt_position


def build_tasks(
    pairs: Sequence[Pair], layout: TokenLayout, tokenizer, metrics: Sequence[str] = METRICS
) -> tuple[list[PatchTask], pd.DataFrame]:
    """Tasks for every pair and metric (rules in the module docstring) and the skipped ones."""
    metrics = check_metrics(metrics)
    resolver = TargetResolver(tokenizer, layout)
    tasks, skipped = [], []
    for pair in pairs:
        w = validate_pair(pair.clean, pair.corrupt)
        cp, rp = pair.clean.to_prompt(layout, tokenizer), pair.corrupt.to_prompt(layout, tokenizer)
        al = align(cp, rp, w)
        nxt = pair.clean.words[w + 1] if w + 1 < len(pair.clean.words) else None
        clean_prefix = cp.input_ids[: al.clean_last + 1]
        corrupt_prefix = rp.input_ids[: al.corrupt_last + 1]
        clean, reasons = read_outs(clean_prefix, nxt, metrics, layout, resolver)
        corrupt, _ = read_outs(corrupt_prefix, nxt, list(clean), layout, resolver)
        for metric in metrics:
            if metric in reasons:
                skipped.append({"pair": pair.id, "metric": metric, "reason": reasons[metric]})
                continue
            (c_ids, c_read), (r_ids, r_read) = clean[metric], corrupt[metric]
            n_read = c_read.positions.shape[1]
            cells = al.cells(max_after=n_read - 1 if metric == "speech" else 1)
            tasks.append(PatchTask(pair.id, metric, c_ids, r_ids, c_read, r_read, cells))
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


__all__ = ["PatchTask", "build_tasks", "task_grid"]
