"""Paired excess over the control and the phase bands built on it."""

import numpy as np
import pandas as pd
import pytest

from speech_interp.lens import (
    LENS_COLUMNS,
    excess_over_control,
    phase_bands,
)

pytestmark = pytest.mark.integration
N_BOOT = 200


def test_excess_and_phase_bands(tl_result):
    ex = excess_over_control(tl_result.words, metric="transcription", k=10, n_boot=N_BOOT)
    assert list(ex.columns) == LENS_COLUMNS and set(ex.metric) == {"transcription_excess"}
    w = tl_result.words
    at1 = w[(w.layer == 1) & w.content & (w.control_id >= 0)]
    au, ctrl = at1.rank_text_after_uniqueness, at1.control_rank_text_after_uniqueness
    expected = (au < 10).mean() - (ctrl < 10).mean()
    assert ex[ex.layer == 1]["value"].item() == pytest.approx(expected)
    assert set(ex.position_rule) == {"after_uniqueness"}
    pre = excess_over_control(w, k=10, baseline="pre_onset", n_boot=N_BOOT)
    assert set(pre.metric) == {"transcription_excess_pre_onset"}
    expected = (au < 10).mean() - (at1.rank_text_pre_onset < 10).mean()
    assert pre[pre.layer == 1]["value"].item() == pytest.approx(expected)
    bands = phase_bands(tl_result, n_boot=N_BOOT)
    assert list(bands.phase) == ["transcription", "next_word", "speech"]
    # a planted per-word frame: transcription at every layer (only 1..L-1 may qualify), no
    # next-word excess, speech mass above the threshold at the last layer only
    planted = w.copy()
    planted["rank_text_after_uniqueness"] = 0
    planted["control_rank_text_after_uniqueness"] = 500
    planted["rank_text_pre_onset"] = 500
    planted["next_rank_text_last"] = 500
    planted["speech_mass_any"] = np.where(planted.layer == 2, 0.9, 0.1)
    bands = phase_bands(planted, n_boot=N_BOOT).set_index("phase")
    band = bands.loc["transcription"]
    assert (band["first_layer"], band["last_layer"], band["qualifying"]) == (1, 1, [1])
    nxt = bands.loc["next_word"]
    assert pd.isna(nxt["first_layer"]) and nxt["qualifying"] == []
    # the same hits, already predicted before the word began: no transcription band
    planted["rank_text_pre_onset"] = 0
    predicted = phase_bands(planted, n_boot=N_BOOT).set_index("phase")
    assert predicted.loc["transcription", "qualifying"] == []
    assert bands.loc["speech", "qualifying"] == [2] and bands.loc["speech", "first_layer"] == 2
