"""Rank agreement of attribution with exact patching, on hand-made tables."""

import pandas as pd
import pytest

from speech_interp.causal.attribution import rank_agreement


def test_rank_agreement():
    keys = dict(model="m", backend="tl", pair="p", metric="speech", component="resid_pre")
    exact = pd.DataFrame([{**keys, "layer": 0, "position": i, "value": v}
                          for i, v in enumerate([0.1, 0.5, 0.2, 0.9])])  # fmt: skip
    attr = exact.assign(value=[1.0, 3.0, 2.0, 4.0])
    got = rank_agreement(exact, attr)
    assert got.iloc[0].spearman == pytest.approx(1.0) and got.iloc[0].n == 4
    flipped = rank_agreement(exact, attr.assign(value=[4.0, 2.0, 3.0, 1.0]))
    assert flipped.iloc[0].spearman == pytest.approx(-1.0)
