"""The result tables of the causal tests: their columns, and one row builder for all of them.

Every routine builds its rows as dicts and turns them into a frame with :func:`make_table`, which
checks each row against the table's columns, so a table never gains or loses a column silently.
Patching and attribution share :func:`recovery_rows` (normalised recovery, rule in
:mod:`speech_interp.causal.patching`) and :func:`tidy_patch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from speech_interp.core.edits import COMPONENTS

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
ABLATION_COLUMNS = [
    "model",
    "backend",
    "band",
    "utterance",
    "word_index",
    "word",
    "metric",
    "direction",
    "draw",
    "base",
    "ablated",
    "effect",
]
SUBSTITUTION_COLUMNS = [
    "model",
    "backend",
    "band",
    "pair",
    "word",
    "other",
    "metric",
    "alpha",
    "direction",
    "draw",
    "base_own",
    "base_other",
    "moved_own",
    "moved_other",
    "shift",
    "informative",
]
EPS = 1e-6  # |clean - corrupt| below this: normalised recovery is NaN


def make_table(rows: Sequence[dict], columns: Sequence[str]) -> pd.DataFrame:
    """A frame with exactly ``columns``; a row with a missing or extra key is an error."""
    want = set(columns)
    for row in rows:
        if set(row) != want:
            missing, extra = sorted(want - set(row)), sorted(set(row) - want)
            raise ValueError(f"result row does not fit its table: missing {missing}, extra {extra}")
    return pd.DataFrame(list(rows), columns=list(columns))


def recovery_rows(
    grid: pd.DataFrame,
    *,
    model: str,
    backend: str,
    method: str,
    pair: str,
    metric: str,
    patched: np.ndarray,
    clean: float,
    corrupt: float,
) -> pd.DataFrame:
    """Rows of patched cells (``grid`` from :func:`~speech_interp.causal.tasks.task_grid`)."""
    patched = np.asarray(patched, dtype=np.float64)  # float64: the CSV round trip is exact
    denom = clean - corrupt
    value = (patched - corrupt) / denom if abs(denom) >= EPS else np.full(len(grid), np.nan)
    rows = grid.copy()
    for name, val in (("metric", metric), ("pair", pair), ("method", method)):
        rows.insert(0, name, val)
    rows.insert(0, "backend", backend)
    rows.insert(0, "model", model)
    rows["value"] = value
    rows["patched"] = patched
    rows["clean_metric"], rows["corrupt_metric"] = clean, corrupt
    return rows


def tidy_patch(frame: pd.DataFrame, components: Sequence[str] = COMPONENTS) -> pd.DataFrame:
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


__all__ = [
    "ABLATION_COLUMNS",
    "EPS",
    "EXTRA_COLUMNS",
    "PATCH_COLUMNS",
    "SUBSTITUTION_COLUMNS",
    "make_table",
    "recovery_rows",
    "tidy_patch",
]
