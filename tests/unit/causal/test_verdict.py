"""The verdict rule on synthetic lens and ablation tables."""

import numpy as np
import pandas as pd

from speech_interp.causal.verdict import causal, decide, decodable


def _ablation(text_damage: float, n_words=12, n_random=20, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(n_words):
        base = dict(model="m", backend="tl", band="1-1", utterance=f"u{w}", word_index=1,
                    word=f"w{w % 6}", metric="speech", base=0.0, ablated=0.0)  # fmt: skip
        rows.append({**base, "direction": "text", "draw": -1,
                     "effect": text_damage + 0.01 * rng.standard_normal()})  # fmt: skip
        rows += [{**base, "direction": "random", "draw": d,
                  "effect": 0.05 * rng.standard_normal()} for d in range(n_random)]  # fmt: skip
    return pd.DataFrame(rows)


def _lens_words(own_hit: float, n=30, seed=0, pre_hit=0.1):
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(n):
        for layer in (0, 1, 2):
            rows.append(dict(model="m", backend="tl", item=item, layer=layer, content=True,
                             word=f"w{item % 10}",
                             rank_text_after_uniqueness=0 if rng.random() < own_hit else 50,
                             control_rank_text_after_uniqueness=0 if rng.random() < 0.1 else 50,
                             rank_text_pre_onset=0 if rng.random() < pre_hit else 50))  # fmt: skip
    return pd.DataFrame(rows)


def test_verdict_rule():
    dec_yes = decodable(_lens_words(0.9), "1-2", n_boot=300)
    dec_no = decodable(_lens_words(0.1), "1-2", n_boot=300)
    assert dec_yes["ci_low"] > 0 and dec_yes["n"] == 30
    assert dec_no["ci_low"] <= 0
    cau_yes = causal(_ablation(1.0), "1-1", n_boot=300)
    cau_no = causal(_ablation(0.0), "1-1", n_boot=300)
    assert cau_yes["n_words"] == 12 and cau_yes["n_random"] == 20
    assert cau_yes["effect_size"] > 3
    assert decide(dec_yes, cau_yes)[0] == "load-bearing"
    assert decide(dec_yes, cau_no)[0] == "decodable-only"
    assert decide(dec_no, cau_yes)[0] == "neither"
    assert decide(dec_no, cau_no)[0] == "neither"
    assert decide(decodable(_lens_words(0.9), "5-6"), cau_yes)[0] == "insufficient-data"
    # predicted before the word began (pre-onset hit as high as after the uniqueness point):
    # not transcription, so not decodable, whatever the control says
    predicted = decodable(_lens_words(0.9, pre_hit=0.9), "1-2", n_boot=300)
    assert predicted["ci_low"] > 0 and predicted["pre_onset_ci_low"] <= 0
    assert decide(predicted, cau_yes)[0] == "neither"
    assert dec_yes["n_types"] == 10 and dec_yes["position_rule"] == "after_uniqueness"


def test_power_note_flags_wide_intervals():
    import warnings

    from speech_interp.causal.verdict import inconclusive, verdicts

    few = decodable(_lens_words(0.2, n=6, pre_hit=0.2), "1-2", n_boot=300)
    many = decodable(_lens_words(0.9), "1-2", n_boot=300)
    spread = _ablation(0.0, n_words=4)
    text_rows = spread["direction"] == "text"
    spread.loc[text_rows, "effect"] = [0.5, -0.4, 0.3, -0.35]  # 4 words that disagree
    noisy = causal(spread, "1-1", n_boot=300)
    clear = causal(_ablation(1.0), "1-1", n_boot=300)
    assert "decodable" in inconclusive(few, clear) and inconclusive(many, clear) == []
    assert "causal" in inconclusive(many, noisy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = verdicts(_lens_words(0.2, n=6, pre_hit=0.2), spread, bands=["1-1"], n_boot=200)
    assert out["bands"][0]["inconclusive"] and any("too wide" in str(w.message) for w in caught)
