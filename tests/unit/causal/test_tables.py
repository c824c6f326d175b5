"""The one row builder: rows must fit their table exactly."""

import numpy as np
import pandas as pd
import pytest

from speech_interp.causal.tables import make_table, recovery_rows


def test_make_table_checks_columns():
    t = make_table([{"a": 1, "b": 2}, {"b": 4, "a": 3}], ["a", "b"])
    assert list(t.columns) == ["a", "b"] and t["a"].tolist() == [1, 3]
    with pytest.raises(ValueError, match=r"missing \['b'\], extra \['c'\]"):
        make_table([{"a": 1, "c": 2}], ["a", "b"])


def test_recovery_rows():
    grid = pd.DataFrame({"component": ["resid_pre"] * 2, "layer": [0, 1], "position": [-1, -1],
                         "clean_position": [3, 3], "corrupt_position": [4, 4]})  # fmt: skip
    rows = recovery_rows(grid, model="m", backend="tl", method="exact", pair="p",
                         metric="speech", patched=np.array([-2.0, -1.0]), clean=-1.0,
                         corrupt=-3.0)  # fmt: skip
    assert rows["value"].tolist() == [0.5, 1.0]
    assert list(rows.columns[:5]) == ["model", "backend", "method", "pair", "metric"]
    flat = recovery_rows(grid, model="m", backend="tl", method="exact", pair="p",
                         metric="speech", patched=np.array([-2.0, -1.0]), clean=-1.0,
                         corrupt=-1.0)  # fmt: skip
    assert flat["value"].isna().all()
