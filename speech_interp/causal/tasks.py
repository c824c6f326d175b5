"""Patching tasks: a pair under one metric kind, its two prompts, read-outs and patchable cells.

**Tasks.** Every pair (:mod:`speech_interp.data.pairs`) gives one task per metric kind: both
prompts cut after the differing word, then the clean next word read out the way the kind says
(:mod:`speech_interp.causal.readouts`: ``speech``, its units; ``text``, its text target after a
switch to text). The read-out is identical in both prompts. A pair lacking what a kind needs is
skipped for that kind (listed in ``PatchResult.skipped``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from jaxtyping import Int
from torch import Tensor

from speech_interp.causal.readouts import KINDS, check_kinds, continuation
from speech_interp.core.edits import Readout
from speech_interp.data.pairs import Pair, align, validate_pair
from speech_interp.data.targets import TargetResolver
from speech_interp.hooks import TokenLayout


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


__all__ = ["PatchTask", "build_tasks", "task_grid"]
