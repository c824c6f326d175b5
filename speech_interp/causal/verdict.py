"""Verdict per model and layer band: is the text stage decodable, load-bearing, or neither?

Rule (fixed before any result was looked at; ``k=5``, ``alpha=0.05``, content words):

1. **Decodable** in band a-b: per spoken content word, its band hit is the mean over streams
   a..b of [own target in the lens top-k text tokens at any of the word's positions] minus the
   same for its matched control word (``lens_words`` of :func:`speech_interp.run_lens`). The
   decodable excess is the mean over words, with a percentile-bootstrap 95% CI over words;
   decodable = CI low > 0. ``rate`` / ``control_rate`` are the two means.
2. **Causal** in band a-b, on the ``speech`` metric (the model's speech output; the ``text``
   metric is reported beside it): per word, the damage of projecting out its text direction
   (:func:`speech_interp.causal.ablation.ablate`) and the mean damage over the random directions.
   ``effect`` = mean over words of (text damage - mean random damage), with a bootstrap 95% CI
   over words. The random control distribution is the mean damage over words of each random
   direction (one value per direction); ``effect_size = (text damage - its mean) / its sd``.
   Causal = text damage > the 95th percentile of that distribution **and** effect CI low > 0.
3. **Verdict**: ``load-bearing`` if decodable and causal; ``decodable-only`` if decodable and not
   causal; ``neither`` otherwise (a causal effect without decodability also reads ``neither``;
   the ``decodable`` and ``causal`` flags are written beside the verdict, nothing is hidden);
   ``insufficient-data`` when a band has no scored word on either side.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import pandas as pd

from speech_interp.core.runs import parse_span
from speech_interp.stats import bootstrap_ci, paired_excess

VERDICTS = ("load-bearing", "decodable-only", "neither", "insufficient-data")


def decodable(
    lens_words: pd.DataFrame,
    band: str,
    *,
    k: int = 5,
    words: str = "content",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Decodable excess of transcription@k over its control in a band (rule 1)."""
    a, b = parse_span(band)
    w = lens_words[(lens_words["layer"] >= a) & (lens_words["layer"] <= b)]
    if words == "content":
        w = w[w["content"].fillna(False).astype(bool)]
    w = w.dropna(subset=["rank_text_any", "control_rank_text_any"])
    if w.empty:
        return {
            "rate": None,
            "control_rate": None,
            "excess": None,
            "ci_low": None,
            "ci_high": None,
            "n": 0,
            "k": k,
        }
    keys = ["model", "backend", "item"]
    own = (w["rank_text_any"] < k).astype(float).groupby([w[c] for c in keys]).mean()
    ctrl = (w["control_rank_text_any"] < k).astype(float).groupby([w[c] for c in keys]).mean()
    mean, lo, hi = paired_excess(own.to_numpy(), ctrl.to_numpy(), n_boot=n_boot, seed=seed)
    return {
        "rate": float(own.mean()),
        "control_rate": float(ctrl.mean()),
        "excess": mean,
        "ci_low": lo,
        "ci_high": hi,
        "n": int(len(own)),
        "k": k,
    }


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
        "n_random": 0,
        "probe_damage": None,
    }
    if len(common) == 0:
        return empty
    rand = rand.set_index(item).loc[common].reset_index()
    per_draw = rand.groupby("draw")["effect"].mean().to_numpy()
    d_text = text.loc[common].to_numpy(dtype=float)
    d_rand = per_word_rand.loc[common].to_numpy(dtype=float)
    effect, lo, hi = paired_excess(d_text, d_rand, n_boot=n_boot, seed=seed)
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
        n_random=int(len(per_draw)),
        probe_damage=float(probe.mean()) if len(probe) else None,
    )
    if len(probe):
        _, p_lo, p_hi = bootstrap_ci(probe.to_numpy(dtype=float), n_boot=n_boot, seed=seed)
        out.update(probe_ci_low=p_lo, probe_ci_high=p_hi)
    return out


def decide(dec: dict, cau: dict) -> tuple[str, bool | None, bool | None]:
    """(verdict, decodable flag, causal flag) by rule 3."""
    if not dec.get("n") or not cau.get("n_words"):
        return "insufficient-data", None, None
    is_dec = dec["ci_low"] is not None and dec["ci_low"] > 0
    is_cau = bool(cau["text_damage"] > cau["control_p95"] and cau["ci_low"] > 0)
    if is_dec and is_cau:
        return "load-bearing", is_dec, is_cau
    if is_dec:
        return "decodable-only", is_dec, is_cau
    return "neither", is_dec, is_cau


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
        entries.append(
            {
                "band": band,
                "verdict": verdict,
                "decodable": is_dec,
                "causal": is_cau,
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


__all__ = ["VERDICTS", "causal", "decide", "decodable", "verdicts"]
