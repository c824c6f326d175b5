"""Per-word results of a lens run: each stream's scores reduced per word, then the frames.

:func:`aggregate` reduces one stream's :class:`~speech_interp.lens.unembed.Scores` over a
:class:`~speech_interp.lens.plan.Plan` to per-word values (ranks per query kind under every
position rule and vocabulary, speech mass, lens quality, top text token);
:func:`word_values` / :func:`pool_values` take one word's values across the streams, and
:func:`words_frame` / :func:`pool_frame` build the per-word x layer and per-pool-member frames.
:func:`report_missing` warns about words without a target or a control.
"""

from __future__ import annotations

import warnings

import einops
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from speech_interp.lens.metrics import POSITION_RULES, RANK_COLUMNS, RANK_KINDS, VOCABS
from speech_interp.lens.plan import N_KINDS, Plan
from speech_interp.lens.unembed import Scores

_BIG = torch.iinfo(torch.long).max
VOCAB_RULES = [f"{v}_{r}" for v in VOCABS for r in POSITION_RULES]  # keys of aggregate's ranks


def aggregate(scores: Scores, plan: Plan, final_top: Tensor) -> dict[str, np.ndarray]:
    """Per-slot values of one layer: ranks per kind ``[s, kinds]`` under every position rule and
    vocabulary (``"{vocab}_{rule}"``), speech mass, lens quality (KL to the final distribution
    and top-1 agreement with the final top-1 ``final_top``, each averaged over the word's
    positions) and the top text token at the last position."""
    dev = scores.rank_text.device
    groups = plan.n_slots * plan.n_kinds
    qg = plan.query_group.to(dev)
    out: dict[str, np.ndarray] = {}
    pooled = {"text": scores.pooled_rank_text, "full": scores.pooled_rank_full}
    for vocab, ranks in (("text", scores.rank_text), ("full", scores.rank_full)):
        for rule in POSITION_RULES:
            best = torch.full((groups,), _BIG, dtype=torch.long, device=dev)
            if rule == "maxpool":
                best = best.scatter_reduce(0, plan.pool_group.to(dev), pooled[vocab], "amin")
            else:
                sel = plan.query_rules[rule].to(dev)
                best = best.scatter_reduce(0, qg[sel], ranks[sel], "amin")
            arr = einops.rearrange(best.cpu().double(), "(s k) -> s k", k=plan.n_kinds).numpy()
            arr[arr == float(_BIG)] = np.nan
            out[f"{vocab}_{rule}"] = arr
    word_rows = plan.slot_of_row >= 0
    mass = scores.speech_mass.cpu().double()
    slot = plan.slot_of_row[word_rows]
    sums = torch.zeros(plan.n_slots, dtype=torch.float64).index_add_(0, slot, mass[word_rows])
    counts = torch.bincount(slot, minlength=plan.n_slots).double()
    out["speech_mass_any"] = (sums / counts).numpy()
    out["speech_mass_last"] = mass[plan.last_of_slot].numpy()
    agree = (scores.top_full_id.cpu() == final_top.cpu()).double()[word_rows]
    for name, values in (
        ("kl_to_final", scores.kl_to_ref.cpu()[word_rows]),
        ("top1_agreement", agree),
    ):
        total = torch.zeros(plan.n_slots, dtype=torch.float64).index_add_(0, slot, values.double())
        out[name] = (total / counts).numpy()
    out["top_text_id_last"] = scores.top_text_id.cpu()[plan.last_of_slot].numpy()
    return out


def word_values(per_layer: list[dict[str, np.ndarray]], s: int) -> dict[str, np.ndarray]:
    """Per-word columns (one value per layer) of slot ``s``: the rank columns and the rest."""
    out = {}
    for name, array in per_layer[0].items():
        if array.ndim == 1:
            out[name] = np.array([d[name][s] for d in per_layer])
    for kind, prefix in enumerate(RANK_KINDS):
        for vocab_rule in VOCAB_RULES:
            name = f"{prefix}_{vocab_rule}"
            if name in RANK_COLUMNS:
                out[name] = np.array([d[vocab_rule][s, kind] for d in per_layer])
    return out


def pool_values(per_layer, s: int, row: dict, control) -> dict[str, np.ndarray]:
    """Columns of slot ``s``'s control-pool rows: one per layer x pool member."""
    members = control.pool if row["target_id"] >= 0 else ()
    n_layers, m = len(per_layer), len(members)
    out = {
        "item": np.full(n_layers * m, row["item"]),
        "layer": np.repeat(np.arange(n_layers), m),
        "pool_word": np.array([w for w, _ in members] * n_layers, dtype=object),
        "pool_id": np.array([t.token_id for _, t in members] * n_layers, dtype=np.int64),
    }
    for vocab_rule in VOCAB_RULES:
        ranks = [d[vocab_rule][s, N_KINDS : N_KINDS + m] for d in per_layer]
        out[f"rank_{vocab_rule}"] = np.concatenate(ranks) if m else np.zeros(0)
    return out


def pool_frame(parts: list[dict[str, np.ndarray]], model_id, backend, lens_name) -> pd.DataFrame:
    """One frame from every slot's :func:`pool_values`, led by the model, backend and lens."""
    frame = pd.DataFrame({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})
    frame.insert(0, "lens", lens_name)
    frame.insert(0, "backend", backend)
    frame.insert(0, "model", model_id)
    return frame


def words_frame(meta, values, model_id, backend, lens_name, tok) -> pd.DataFrame:
    """The per-word x layer frame: each word's ``meta`` row repeated per layer, its
    :func:`word_values`, and the top text token decoded by ``tok``."""
    n_layers = len(next(iter(values[0].values())))
    base = pd.DataFrame(meta)
    base.insert(0, "item", base.pop("item"))
    frame = base.loc[base.index.repeat(n_layers)].reset_index(drop=True)
    frame.insert(0, "lens", lens_name)
    frame.insert(0, "backend", backend)
    frame.insert(0, "model", model_id)
    frame["layer"] = np.tile(np.arange(n_layers), len(base))
    for key in values[0]:
        stacked = np.stack([v[key] for v in values])
        frame[key] = einops.rearrange(stacked, "w l -> (w l)")
    top = frame.pop("top_text_id_last").astype(int)
    uniq = [int(i) for i in np.unique(top) if i >= 0]
    names = dict(zip(uniq, tok.batch_decode([[i] for i in uniq]), strict=True))
    frame["top_text_last"] = [names.get(i) for i in top.tolist()]
    ordered = ["model", "backend", "lens", *base.columns, "layer", *RANK_COLUMNS]
    ordered += ["speech_mass_any", "speech_mass_last", "kl_to_final", "top1_agreement"]
    ordered += ["top_text_last"]
    return frame[ordered]


def report_missing(words: pd.DataFrame) -> pd.DataFrame:
    """The words without a target (one row each); warns about them and about words without a
    control (``stacklevel`` points at :func:`~speech_interp.lens.run.run_lens`'s caller)."""
    first = words[words["layer"] == words["layer"].min()]
    missing = first[first["target_rule"] == "missing"][["utterance", "word_index", "word"]]
    if len(missing):
        shown = ", ".join(repr(w) for w in missing["word"].unique()[:10])
        warnings.warn(
            f"{len(missing)} spoken word(s) have no text target token and are out of every rate "
            f"(kept in the per-word frame with target_rule='missing'): {shown}",
            stacklevel=3,
        )
    no_control = first[(first["control_rule"] == "none") & (first["target_rule"] != "missing")]
    if len(no_control):
        warnings.warn(
            f"{len(no_control)} spoken word(s) have no control word (the data set has no other "
            "word type with a target); they are out of the control rates",
            stacklevel=3,
        )
    return missing.reset_index(drop=True)


__all__ = [
    "VOCAB_RULES",
    "aggregate",
    "pool_frame",
    "pool_values",
    "report_missing",
    "word_values",
    "words_frame",
]
