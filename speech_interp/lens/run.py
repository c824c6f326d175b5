"""Run a lens over the L+1 residual streams of every utterance: one row per spoken word x layer.

Streams are those of :func:`speech_interp.core.residuals.residual_stack`: stream ``l < L`` is block
l's input, stream ``L`` the last block's output before the final norm. A lens
(:mod:`speech_interp.lens.lenses`) maps a stream to the model's final-norm input, then the model's
own final norm and unembedding apply on the client (plain torch, float32). Scoring
(:mod:`speech_interp.lens.unembed`) never holds layers x positions x vocab: it reads the residuals
at the needed positions only and walks the unembedding in ``chunk_size`` rows, accumulating per
position the targets' ranks, running log-sum-exps over the full vocabulary and over speech units,
and the best text token. The per-word ranks become rates in :mod:`speech_interp.lens.metrics`.

Only spoken words are scored (text words serve as next words). Words whose target is missing stay
in the per-word frame with NaN ranks and ``target_rule == "missing"``, are counted in
:attr:`LensResult.missing` and raise a warning; they are out of every rate's n.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import einops
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.core.residuals import residual_stack
from speech_interp.data.prompt import Prompt
from speech_interp.data.targets import MISSING, TargetResolver, draw_controls
from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.lens.lenses import Lens, as_lens
from speech_interp.lens.metrics import RANK_COLUMNS, RANK_KINDS, excess_over_control, summarize
from speech_interp.lens.unembed import Scores, causal_lm
from speech_interp.models import backend_of, tokenizer_of

_BIG = torch.iinfo(torch.long).max


@dataclass
class _Plan:
    """What to score in one prompt: word slots, positions and (position, token) queries."""

    positions: Int[Tensor, " p"]  # prompt positions to read
    slot_of_pos: Int[Tensor, " p"]  # word slot of each read position
    last_of_slot: Int[Tensor, " s"]  # index (into positions) of each slot's last position
    query_pos: Int[Tensor, " q"]  # index into positions
    query_tok: Int[Tensor, " q"]
    query_group: Int[Tensor, " q"]  # slot * 4 + kind
    query_last: Tensor  # bool: query sits at its slot's last position
    n_slots: int


def _plan(prompt: Prompt, slots: list[int], tokens: list[list[int]]) -> _Plan:
    """``slots``: spoken word indices; ``tokens[s]``: target ids per kind (-1 = none)."""
    positions, slot_of_pos, last_of_slot = [], [], []
    qp, qt, qg, ql = [], [], [], []
    for s, w in enumerate(slots):
        word_pos = prompt.word_positions[w].tolist()
        first = len(positions)
        positions += word_pos
        slot_of_pos += [s] * len(word_pos)
        last = first + len(word_pos) - 1
        last_of_slot.append(last)
        for kind, tok in enumerate(tokens[s]):
            if tok < 0:
                continue
            idx = range(first, last + 1) if kind < 2 else [last]
            qp += list(idx)
            qt += [tok] * len(idx)
            qg += [s * 4 + kind] * len(idx)
            ql += [i == last for i in idx]
    long = torch.long
    return _Plan(
        torch.tensor(positions, dtype=long),
        torch.tensor(slot_of_pos, dtype=long),
        torch.tensor(last_of_slot, dtype=long),
        torch.tensor(qp, dtype=long),
        torch.tensor(qt, dtype=long),
        torch.tensor(qg, dtype=long),
        torch.tensor(ql, dtype=torch.bool),
        len(slots),
    )


def _aggregate(scores: Scores, plan: _Plan) -> dict[str, np.ndarray]:
    """Per-slot values of one layer: rank columns, speech mass and the top text token."""
    dev = scores.rank_text.device
    groups = plan.n_slots * 4
    qg, ql = plan.query_group.to(dev), plan.query_last.to(dev)
    out: dict[str, np.ndarray] = {}
    for vocab, ranks in (("text", scores.rank_text), ("full", scores.rank_full)):
        best = torch.full((groups,), _BIG, dtype=torch.long, device=dev)
        best = best.scatter_reduce(0, qg, ranks, "amin")
        last = torch.full((groups,), -1, dtype=torch.long, device=dev)
        last[qg[ql]] = ranks[ql]
        for rule, val in (("any", best), ("last", last)):
            arr = einops.rearrange(val.cpu().double(), "(s k) -> s k", k=4).numpy()
            arr[(arr < 0) | (arr == float(_BIG))] = np.nan
            for kind, prefix in enumerate(RANK_KINDS):
                name = f"{prefix}_{vocab}_{rule}"
                if name in RANK_COLUMNS:
                    out[name] = arr[:, kind]
    mass = scores.speech_mass.cpu().double()
    slot = plan.slot_of_pos
    sums = torch.zeros(plan.n_slots, dtype=torch.float64).index_add_(0, slot, mass)
    counts = torch.bincount(slot, minlength=plan.n_slots).double()
    out["speech_mass_any"] = (sums / counts).numpy()
    out["speech_mass_last"] = mass[plan.last_of_slot].numpy()
    out["top_text_id_last"] = scores.top_text_id.cpu()[plan.last_of_slot].numpy()
    return out


@dataclass
class LensResult:
    """``summary``: tidy rows with the ``lens.csv`` columns; ``words``: one row per word x layer."""

    summary: pd.DataFrame
    words: pd.DataFrame
    missing: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def n_missing(self) -> int:
        return len(self.missing)

    def excess(self, metric: str = "transcription", **kw) -> pd.DataFrame:
        """:func:`~speech_interp.lens.metrics.excess_over_control` of this run."""
        return excess_over_control(self.words, metric=metric, **kw)

    def phases(self, **kw) -> pd.DataFrame:
        """:func:`~speech_interp.lens.phases.phase_bands` of this run."""
        from speech_interp.lens.phases import phase_bands

        return phase_bands(self, **kw)


def run_lens(
    model,
    layout: TokenLayout,
    utterances: Sequence[Utterance],
    *,
    lens: str | Lens = "logit",
    ks: Sequence[int] = (1, 5, 10),
    backend: str | None = None,
    remote: bool | str = False,
    chunk_size: int = 8192,
    seed: int = 0,
    progress: bool = True,
    model_id: str | None = None,
    n_boot: int = 2000,
    tokenizer=None,
) -> LensResult:
    """Score every spoken word of ``utterances`` at every stream (rules in the module docstring).

    Residuals come from :func:`speech_interp.residual_stack` (remote-safe on nnsight); the lens is
    applied on the client.

    Args:
        model: a TransformerLens bridge or an nnsight model (:func:`speech_interp.load`).
        layout: the model's token layout.
        utterances: the data; every spoken word is scored.
        lens: a registered lens name (:data:`speech_interp.lens.LENSES`) or a Lens object.
        ks: the k of every top-k rate.
        backend: if given, checked against the model's backend.
        chunk_size: vocabulary rows scored at a time (memory, not results).
        seed: seed of the control draw and the bootstrap.
        n_boot: bootstrap resamples per CI.
        remote, model_id, progress, tokenizer: as for every routine
            (:func:`speech_interp.core.runs.run_context`).

    Returns:
        :class:`LensResult`: the ``lens.csv`` summary, the per-word frame and the words
        without a target.
    """
    utterances = list(utterances)
    if not utterances:
        raise ValueError("no utterances to score: the data set is empty")
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    actual = backend_of(model)
    if backend is not None and backend != actual:
        raise ValueError(f"backend={backend!r} but the model is a {actual!r} model")
    lens_obj = as_lens(lens, model)
    tok = tokenizer if tokenizer is not None else tokenizer_of(model)
    model_id = model_id or str(causal_lm(model).config.name_or_path)
    resolver = TargetResolver(tok, layout)
    controls = draw_controls(utterances, resolver, seed=seed)

    meta: list[dict] = []
    values: list[dict[str, np.ndarray]] = []
    for u, utt in enumerate(tqdm(utterances, desc="lens", disable=not progress)):
        prompt = utt.to_prompt(layout, tok)
        slots = [i for i, w in enumerate(utt.words) if w.modality == "speech"]
        if not slots:
            continue
        tokens, rows = [], []
        for w in slots:
            row, kinds = _word_meta(utt, prompt, u, w, resolver, controls[u])
            tokens.append(kinds)
            rows.append(row)
        plan = _plan(prompt, slots, tokens)
        stack = residual_stack(model, prompt.input_ids[None], remote=remote)[:, 0]
        with torch.no_grad():
            resid = stack[:, plan.positions.to(stack.device)]
            streams = lens_obj.score_streams(
                resid, plan.query_pos, plan.query_tok, layout, chunk_size
            )
        per_layer = [_aggregate(scores, plan) for scores in streams]
        for s, row in enumerate(rows):
            meta.append(row)
            values.append({k: np.array([d[k][s] for d in per_layer]) for k in per_layer[0]})
    if not meta:
        raise ValueError("no spoken words to score: every word in the data is a text word")
    words = _words_frame(meta, values, model_id, actual, lens_obj.name, tok)
    missing = _report_missing(words)
    summary = summarize(words, ks, n_boot=n_boot, seed=seed)
    return LensResult(summary, words, missing)


def _word_meta(
    utt: Utterance, prompt: Prompt, u: int, w: int, resolver, controls
) -> tuple[dict, list[int]]:
    word = utt.words[w]
    target = resolver(word.word)
    control = controls[w]
    has_next = w + 1 < len(utt.words)
    nxt = utt.words[w + 1] if has_next else None
    next_target = resolver(nxt.word) if has_next else MISSING
    next_control = controls[w + 1] if has_next else None
    next_control_target = next_control.target if next_control else MISSING
    row = {
        "utterance": utt.id,
        "utterance_index": u,
        "word_index": w,
        "word": word.word,
        "category": word.category,
        "content": word.content,
        "n_positions": int(prompt.word_positions[w].numel()),
        "target_id": target.token_id,
        "target_token": target.token,
        "target_rule": target.rule,
        "control_word": control.word,
        "control_id": control.target.token_id,
        "control_rule": control.rule,
        "next_word": nxt.word if nxt else None,
        "next_content": nxt.content if nxt else None,
        "next_id": next_target.token_id,
        "next_target_rule": next_target.rule if nxt else None,
        "next_control_word": next_control.word if next_control else None,
        "next_control_id": next_control_target.token_id,
    }
    kinds = [
        target.token_id,
        control.target.token_id if target.found else -1,
        next_target.token_id,
        next_control_target.token_id if next_target.found else -1,
    ]
    return row, kinds


def _words_frame(meta, values, model_id, backend, lens_name, tok) -> pd.DataFrame:
    n_layers = len(next(iter(values[0].values())))
    base = pd.DataFrame(meta)
    base.insert(0, "item", range(len(base)))
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
    ordered += ["speech_mass_any", "speech_mass_last", "top_text_last"]
    return frame[ordered]


def _report_missing(words: pd.DataFrame) -> pd.DataFrame:
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


def lens_top_tokens(
    model,
    layout: TokenLayout,
    prompt: Prompt,
    lens: str | Lens = "logit",
    *,
    chunk_size: int = 8192,
    remote: bool | str = False,
) -> tuple[Int[Tensor, "layer pos"], Float[Tensor, "layer pos"]]:
    """Top *text* token id and its full-softmax probability at every stream and position."""
    lens_obj = as_lens(lens, model)
    stack = residual_stack(model, prompt.input_ids[None], remote=remote)[:, 0]
    empty = torch.zeros(0, dtype=torch.long)
    with torch.no_grad():
        streams = lens_obj.score_streams(stack, empty, empty, layout, chunk_size)
    ids = torch.stack([s.top_text_id.cpu() for s in streams])
    probs = torch.stack([s.top_text_prob.cpu() for s in streams])
    return ids, probs


__all__ = ["LensResult", "lens_top_tokens", "run_lens"]
