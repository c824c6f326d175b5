"""Verdict per model and layer band: is the text stage decodable, load-bearing, or neither?

Rule (version 2, written before any verdict under it was computed; ``k=5``, ``alpha=0.05``,
content words). Version 1 read a hit at *any* of a word's positions against a category-matched
control, with CIs over word occurrences; a hit at a word's first unit is prediction from context,
not transcription, so version 2 reads only positions at or after the word's uniqueness point and
asks the hit to beat what the model predicted before the word began.

1. **Decodable** in band a-b: per spoken content word, its band hit is the mean over streams
   a..b of [own target in the lens top-k text tokens at a position at or after the word's
   uniqueness point] (position rule ``after_uniqueness``, :mod:`speech_interp.lens.metrics`;
   ``lens_words`` of :func:`speech_interp.run_lens`). Two paired excesses over words: over the
   same for its matched control word (category and frequency), and over its ``pre_onset`` band
   hit (its own target at the position before its first token). Each is a mean over words with
   a percentile-bootstrap 95% CI that resamples word *types*; decodable = both CI lows > 0.
   ``rate`` / ``control_rate`` / ``pre_onset_rate`` are the three means.
2. **Causal** in band a-b, on the ``speech`` metric (the model's speech output; the ``text``
   metric is reported beside it): per word, the damage of projecting out its text direction
   (:func:`speech_interp.causal.ablation.ablate`) and the mean damage over the random directions.
   ``effect`` = mean over words of (text damage - mean random damage), with a bootstrap 95% CI
   that resamples word types. The random control distribution is the mean damage over words of
   each random direction (one value per direction);
   ``effect_size = (text damage - its mean) / its sd``.
   Causal = text damage > the 95th percentile of that distribution **and** effect CI low > 0.
3. **Verdict**: ``load-bearing`` if decodable and causal; ``decodable-only`` if decodable and not
   causal; ``neither`` otherwise (a causal effect without decodability also reads ``neither``;
   the ``decodable`` and ``causal`` flags are written beside the verdict, nothing is hidden);
   ``insufficient-data`` when a band has no scored word on either side.
4. **Power note** (does not change a verdict): a test is *inconclusive* when one of its 95% CIs
   contains 0 and its half-width is at least the smallest effect it should detect (0.05 of rate
   for either decodable excess; the random directions' own margin, 95th percentile minus mean
   damage, for the causal effect), or when its words are of a single type (no CI over types).
   Such bands list the test in ``inconclusive`` and raise a warning: the data are too few to
   tell, not evidence of absence.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from speech_interp.core.runs import parse_span
from speech_interp.stats import bootstrap_ci, paired_excess

VERDICTS = ("load-bearing", "decodable-only", "neither", "insufficient-data")


RULE = "after_uniqueness"


def decodable(
    lens_words: pd.DataFrame,
    band: str,
    *,
    k: int = 5,
    words: str = "content",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Decodable excesses of transcription@k over its control and over pre-onset (rule 1)."""
    a, b = parse_span(band)
    w = lens_words[(lens_words["layer"] >= a) & (lens_words["layer"] <= b)]
    if words == "content":
        w = w[w["content"].fillna(False).astype(bool)]
    own_col, ctrl_col = f"rank_text_{RULE}", f"control_rank_text_{RULE}"
    pre_col = "rank_text_pre_onset"
    w = w.dropna(subset=[own_col, ctrl_col, pre_col])
    out = {
        "position_rule": RULE,
        "rate": None,
        "control_rate": None,
        "pre_onset_rate": None,
        "excess": None,
        "ci_low": None,
        "ci_high": None,
        "excess_pre_onset": None,
        "pre_onset_ci_low": None,
        "pre_onset_ci_high": None,
        "n": 0,
        "n_types": 0,
        "k": k,
    }
    if w.empty:
        return out
    keys = [w[c] for c in ("model", "backend", "item")]
    own, ctrl, pre = (
        (w[col] < k).astype(float).groupby(keys).mean() for col in (own_col, ctrl_col, pre_col)
    )
    types = w.groupby(keys)["word"].first().str.lower().to_numpy()
    boot = dict(n_boot=n_boot, seed=seed, clusters=types)
    mean, lo, hi = paired_excess(own.to_numpy(), ctrl.to_numpy(), **boot)
    p_mean, p_lo, p_hi = paired_excess(own.to_numpy(), pre.to_numpy(), **boot)
    out.update(
        rate=float(own.mean()),
        control_rate=float(ctrl.mean()),
        pre_onset_rate=float(pre.mean()),
        excess=mean,
        ci_low=lo,
        ci_high=hi,
        excess_pre_onset=p_mean,
        pre_onset_ci_low=p_lo,
        pre_onset_ci_high=p_hi,
        n=int(len(own)),
        n_types=int(len(set(types))),
    )
    return out


def causal(
    ablation: pd.DataFrame, band: str, metric: str = "speech", *, n_boot: int = 2000, seed: int = 0
) -> dict:
    """Text-direction damage against the random-direction control in a band (rule 2)."""
    t = ablation[(ablation["band"] == band) & (ablation["metric"] == metric)]
    item = ["utterance", "word_index"]
    text = t[t["direction"] == "text"].set_index(item)["effect"]
    rand = t[t["direction"] == "random"]
    per_word_rand = rand.groupby(item)["effect"].mean()
    common = text.index.intersection(per_word_rand.index)
    empty = {
        "metric": metric,
        "text_damage": None,
        "control_mean": None,
        "control_sd": None,
        "control_p95": None,
        "effect": None,
        "ci_low": None,
        "ci_high": None,
        "effect_size": None,
        "n_words": 0,
        "n_types": 0,
        "n_random": 0,
        "probe_damage": None,
    }
    if len(common) == 0:
        return empty
    types = t[t["direction"] == "text"].set_index(item)["word"].loc[common].str.lower()
    rand = rand.set_index(item).loc[common].reset_index()
    per_draw = rand.groupby("draw")["effect"].mean().to_numpy()
    d_text = text.loc[common].to_numpy(dtype=float)
    d_rand = per_word_rand.loc[common].to_numpy(dtype=float)
    effect, lo, hi = paired_excess(
        d_text, d_rand, n_boot=n_boot, seed=seed, clusters=types.to_numpy()
    )
    sd = float(np.std(per_draw, ddof=1)) if len(per_draw) > 1 else float("nan")
    text_mean = float(d_text.mean())
    probe = t[t["direction"] == "probe"]["effect"]
    out = dict(empty)
    out.update(
        text_damage=text_mean,
        control_mean=float(per_draw.mean()),
        control_sd=sd,
        control_p95=float(np.quantile(per_draw, 0.95)),
        effect=effect,
        ci_low=lo,
        ci_high=hi,
        effect_size=(text_mean - float(per_draw.mean())) / sd if sd and sd > 0 else None,
        n_words=int(len(common)),
        n_types=int(types.nunique()),
        n_random=int(len(per_draw)),
        probe_damage=float(probe.mean()) if len(probe) else None,
    )
    if len(probe):
        probe_types = t[t["direction"] == "probe"]["word"].str.lower().to_numpy()
        _, p_lo, p_hi = bootstrap_ci(
            probe.to_numpy(dtype=float), n_boot=n_boot, seed=seed, clusters=probe_types
        )
        out.update(probe_ci_low=p_lo, probe_ci_high=p_hi)
    return out


def decide(dec: dict, cau: dict) -> tuple[str, bool | None, bool | None]:
    """(verdict, decodable flag, causal flag) by rule 3."""
    if not dec.get("n") or not cau.get("n_words"):
        return "insufficient-data", None, None
    is_dec = bool(dec["ci_low"] is not None and dec["ci_low"] > 0 and dec["pre_onset_ci_low"] > 0)
    is_cau = bool(cau["text_damage"] > cau["control_p95"] and cau["ci_low"] > 0)
    if is_dec and is_cau:
        return "load-bearing", is_dec, is_cau
    if is_dec:
        return "decodable-only", is_dec, is_cau
    return "neither", is_dec, is_cau


MIN_DECODABLE_EXCESS = 0.05


def inconclusive(dec: dict, cau: dict) -> list[str]:
    """The tests of one band whose CI is too wide to decide (rule 4)."""
    out = []

    def wide(lo, hi, smallest) -> bool:
        return lo is not None and lo <= 0 <= hi and (hi - lo) / 2 >= smallest

    if dec.get("n") and (
        dec["n_types"] < 2
        or wide(dec["ci_low"], dec["ci_high"], MIN_DECODABLE_EXCESS)
        or wide(dec["pre_onset_ci_low"], dec["pre_onset_ci_high"], MIN_DECODABLE_EXCESS)
    ):
        out.append("decodable")
    if cau.get("n_words"):
        margin = cau["control_p95"] - cau["control_mean"]
        if cau["n_types"] < 2 or wide(cau["ci_low"], cau["ci_high"], max(margin, 1e-12)):
            out.append("causal")
    return out


def verdicts(
    lens_words: pd.DataFrame,
    ablation: pd.DataFrame,
    *,
    bands: Sequence[str] | None = None,
    k: int = 5,
    metric: str = "speech",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """The ``verdict.json`` content: one entry per band of the ablation table (or ``bands``)."""
    bands = list(bands) if bands is not None else list(dict.fromkeys(ablation["band"]))
    others = [m for m in ("speech", "text") if m != metric]
    entries = []
    for band in bands:
        dec = decodable(lens_words, band, k=k, n_boot=n_boot, seed=seed)
        cau = causal(ablation, band, metric, n_boot=n_boot, seed=seed)
        verdict, is_dec, is_cau = decide(dec, cau)
        weak = inconclusive(dec, cau)
        if weak:
            warnings.warn(
                f"band {band}: the {' and '.join(weak)} test's 95% CI is too wide to decide "
                f"(n = {dec.get('n')} words); '{verdict}' may reflect too little data",
                stacklevel=2,
            )
        entries.append(
            {
                "band": band,
                "verdict": verdict,
                "decodable": is_dec,
                "causal": is_cau,
                "inconclusive": weak,
                "decodable_rate": dec,
                "causal_effect": cau,
                "control_effect": {
                    key: cau[key]
                    for key in ("control_mean", "control_sd", "control_p95", "n_random")
                },
                "other_metrics": {
                    m: causal(ablation, band, m, n_boot=n_boot, seed=seed) for m in others
                },
            }
        )
    models = sorted(set(ablation["model"])) if "model" in ablation else []
    return {
        "model": models[0] if len(models) == 1 else models,
        "k": k,
        "metric": metric,
        "rule": inspect.cleandoc(__doc__ or ""),
        "bands": entries,
    }


__all__ = ["VERDICTS", "causal", "decide", "decodable", "inconclusive", "verdicts"]
