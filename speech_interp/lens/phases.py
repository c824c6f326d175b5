"""Phase bands: which layers show transcription, next-word prediction and speech output."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import pandas as pd

from speech_interp.lens.metrics import LENS_COLUMNS, excess_over_control, per_item, sorted_groups


def _longest_run(layers: Sequence[int]) -> list[int]:
    best: list[int] = []
    run: list[int] = []
    for layer in sorted(layers):
        run = run + [layer] if run and layer == run[-1] + 1 else [layer]
        if len(run) > len(best):
            best = run
    return best


def phase_bands(
    result,
    *,
    k: int = 5,
    vocab: str = "text",
    words: str = "content",
    speech_threshold: float = 0.5,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Layer bands of the three phases, by these rules (L = number of blocks):

    - ``transcription``: layers 1..L-1 where transcription@k under ``after_uniqueness`` (a hit at
      or after the word's uniqueness point) beats both its matched control and its own
      ``pre_onset`` hit: both paired excesses, on ``words`` words (all | content), have a 95% CI
      low > 0 (CIs resample word types).
    - ``next_word``: likewise for next_word@k over next_word_control@k (last position).
    - ``speech``: layers 0..L where mean speech_mass (all spoken words, averaged over each word's
      positions) exceeds ``speech_threshold``.

    The band is the longest contiguous run of qualifying layers (the earliest on ties); empty
    bands have None bounds. ``qualifying`` lists every layer that passed. ``result`` is a
    :class:`~speech_interp.lens.run.LensResult` or a per-word frame.
    """
    per_word = result if isinstance(result, pd.DataFrame) else result.words
    rows = []
    opts = dict(k=k, vocab=vocab, words=words, n_boot=n_boot, seed=seed)
    tests = {
        "transcription": [
            excess_over_control(per_word, metric="transcription", baseline=base, **opts)
            for base in ("control", "pre_onset")
        ],
        "next_word": [excess_over_control(per_word, metric="next_word", **opts)],
    }
    rules = {
        "transcription": f"transcription@{k} (after_uniqueness) over its control and over "
        "pre_onset: both paired excesses CI low > 0, layers 1..L-1",
        "next_word": f"paired excess of next_word@{k} over its control, CI low > 0, layers 1..L-1",
    }
    for key, group, layers in sorted_groups(per_word):
        last = int(layers.max())
        for phase, frames in tests.items():
            passing = set(range(1, last))
            for frame in frames:
                sel = frame[(frame[LENS_COLUMNS[:3]] == list(key)).all(axis=1)]
                passing &= set(sel.loc[sel["ci_low"] > 0, "layer"].astype(int))
            rows.append(_band(key, phase, sorted(passing), rules[phase]))
        mass = np.nanmean(per_item(group, "speech_mass_any"), axis=0)
        ok_layers = [int(la) for la, m in zip(layers, mass, strict=True) if m > speech_threshold]
        rows.append(_band(key, "speech", ok_layers, f"mean speech_mass > {speech_threshold}"))
    return pd.DataFrame(rows).astype({"first_layer": "Int64", "last_layer": "Int64"})


def _band(key, phase: str, qualifying: list[int], rule: str) -> dict:
    band = _longest_run(qualifying)
    return {
        **dict(zip(LENS_COLUMNS[:3], key, strict=True)),
        "phase": phase,
        "first_layer": band[0] if band else None,
        "last_layer": band[-1] if band else None,
        "qualifying": [int(x) for x in qualifying],
        "rule": rule,
    }


# The rule as phases.json records it: phase_bands' docstring.
PHASE_RULE = inspect.cleandoc(phase_bands.__doc__ or "")

__all__ = ["PHASE_RULE", "phase_bands"]
