"""Logit lens and tuned lens over the L+1 residual streams, per spoken word and per layer.

Streams are those of :func:`speech_interp.residual_stack`: stream ``l < L`` is block l's input,
stream ``L`` the last block's output before the final norm. A lens maps a stream to the model's
final-norm input (identity for the logit lens, ``h + A h + b`` for the tuned lens), then applies
the model's own final norm and unembedding on the client (plain torch, float32).

The lenses live in :mod:`speech_interp.lenses`, the vocabulary scoring in
:mod:`speech_interp.unembed`; both are re-exported here. Scoring never holds layers x positions x
vocab: one layer at a time, it reads the residuals at the needed positions only and walks the
unembedding in ``chunk_size`` rows, accumulating per position the targets' ranks, running
log-sum-exps over the full vocabulary and over speech units, and the best text token.

**Rank / tie rule**: a target's rank is the number of *other* tokens with a strictly larger logit
(over the text vocabulary, or over the full vocabulary); the target is in the top-k when its rank
is < k, so tokens tied with the target count in its favour.

**Metrics** (per layer 0..L; rates with a bootstrap 95% CI over words and n):

- ``transcription`` @k: the spoken word's own target token (rule in :mod:`speech_interp.targets`)
  is in the lens top-k at ``any`` of the word's unit positions, or at its ``last`` one.
- ``transcription_control`` @k: the same with the word's matched control word as target.
- ``next_word`` / ``next_word_control`` @k: the next word's (or its control's) target in top-k
  at the word's last position (``position_rule`` is always ``last``). Words without a next word
  (utterance-final) are out of n; ``words=content`` keeps words whose *next* word is content.
- ``speech_mass``: lens probability (full-vocabulary softmax) on speech-unit tokens, averaged over
  the word's positions (``any``) or at its last position (``last``), then over words; ``k`` empty.

``vocab`` is ``text`` (rank among text-vocabulary tokens) or ``full`` (among all tokens);
``words=content`` keeps content words (their own flag; the next word's flag for next_word).
Controls are drawn by the rule in :mod:`speech_interp.targets`; the claim is always the excess
over the control (:func:`excess_over_control`, paired bootstrap over the same words).

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

from speech_interp.data import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.lenses import Lens, LogitLens, TunedLens, as_lens, kl_to_final
from speech_interp.models import backend_of, tokenizer_of
from speech_interp.residuals import residual_stack
from speech_interp.speech.prompt import Prompt
from speech_interp.stats import bootstrap_ci, paired_excess
from speech_interp.targets import MISSING, TargetResolver, draw_controls
from speech_interp.unembed import Scores, Unembedding, causal_lm, score_hidden

LENS_COLUMNS = [
    "model",
    "backend",
    "lens",
    "layer",
    "metric",
    "k",
    "vocab",
    "position_rule",
    "words",
    "value",
    "ci_low",
    "ci_high",
    "n",
]
VOCABS = ("text", "full")
RULES = ("any", "last")
# metric -> (rank-column prefix, position rules, column holding the content flag it filters on)
METRICS = {
    "transcription": ("rank", RULES, "content"),
    "transcription_control": ("control_rank", RULES, "content"),
    "next_word": ("next_rank", ("last",), "next_content"),
    "next_word_control": ("next_control_rank", ("last",), "next_content"),
}
_KINDS = ("rank", "control_rank", "next_rank", "next_control_rank")
RANK_COLUMNS = [
    f"{prefix}_{vocab}_{rule}" for prefix, rules, _ in METRICS.values() for vocab in VOCABS
    for rule in rules
]  # fmt: skip
_BIG = torch.iinfo(torch.long).max


def rank_column(metric: str, vocab: str, position_rule: str) -> str:
    """Per-word column holding ``metric``'s target rank for one vocabulary and position rule."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    prefix, rules, _ = METRICS[metric]
    if vocab not in VOCABS:
        raise ValueError(f"vocab must be one of {VOCABS}, got {vocab!r}")
    if position_rule not in rules:
        raise ValueError(f"{metric} has position rules {rules}, got {position_rule!r}")
    return f"{prefix}_{vocab}_{position_rule}"


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
            for kind, prefix in enumerate(_KINDS):
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


# --------------------------------------------------------------------------- runs


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
        return excess_over_control(self.words, metric=metric, **kw)

    def phases(self, **kw) -> pd.DataFrame:
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
    applied on the client. ``seed`` drives the control draw and the bootstrap.
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


# --------------------------------------------------------------------------- summaries


def _per_item(group: pd.DataFrame, column: str) -> np.ndarray:
    """``[items, layers]`` array of one per-word column (rows sorted by item, layer)."""
    n_layers = group["layer"].nunique()
    return einops.rearrange(group[column].to_numpy(dtype=np.float64), "(w l) -> w l", l=n_layers)


def _sorted_groups(words: pd.DataFrame):
    for key, group in words.groupby(["model", "backend", "lens"], sort=False):
        group = group.sort_values(["item", "layer"])
        layers = np.sort(group["layer"].unique())
        if len(group) != group["item"].nunique() * len(layers):
            raise ValueError(f"{key}: the per-word frame must hold every layer for every word")
        yield key, group, layers


def _word_filter(group: pd.DataFrame, column: str, words: str) -> np.ndarray:
    flags = group[group["layer"] == group["layer"].min()][column]
    if words == "all":
        return np.ones(len(flags), dtype=bool)
    if words == "content":
        return flags.fillna(False).astype(bool).to_numpy()
    raise ValueError(f"words must be 'all' or 'content', got {words!r}")


def _rows(key, layers, metric, cols, mean, lo, hi, n) -> list[dict]:
    """``cols``: one (k, vocab, rule, words) tuple per block of len(layers) statistics."""
    rows = []
    for c, (k, vocab, rule, words) in enumerate(cols):
        for j, layer in enumerate(layers):
            i = c * len(layers) + j
            rows.append(
                dict(
                    zip(LENS_COLUMNS[:3], key, strict=True),
                    layer=int(layer),
                    metric=metric,
                    k=k,
                    vocab=vocab,
                    position_rule=rule,
                    words=words,
                    value=mean[i] if n else np.nan,
                    ci_low=lo[i] if n else np.nan,
                    ci_high=hi[i] if n else np.nan,
                    n=n,
                )
            )
    return rows


def _ci(values: np.ndarray, n_boot: int, seed: int, alpha: float):
    if values.shape[0] == 0:
        return None, None, None
    return bootstrap_ci(values, n_boot=n_boot, seed=seed, alpha=alpha)


def summarize(
    words: pd.DataFrame,
    ks: Sequence[int] = (1, 5, 10),
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The tidy ``lens.csv`` table from a per-word frame (one or several model / lens runs)."""
    rows: list[dict] = []
    for key, group, layers in _sorted_groups(words):
        for metric, (_, rules, flag) in METRICS.items():
            for word_set in ("all", "content"):
                first_col = rank_column(metric, "text", rules[0])
                keep = _word_filter(group, flag, word_set)
                keep = keep & ~np.isnan(_per_item(group, first_col)[:, 0])
                cols, blocks = [], []
                for vocab in VOCABS:
                    for rule in rules:
                        ranks = _per_item(group, rank_column(metric, vocab, rule))[keep]
                        for k in ks:
                            cols.append((k, vocab, rule, word_set))
                            blocks.append((ranks < k).astype(np.float64))
                mean, lo, hi = _ci(np.concatenate(blocks, axis=1), n_boot, seed, alpha)
                rows += _rows(key, layers, metric, cols, mean, lo, hi, int(keep.sum()))
        for word_set in ("all", "content"):
            keep = _word_filter(group, "content", word_set)
            blocks = [_per_item(group, f"speech_mass_{rule}")[keep] for rule in RULES]
            cols = [(pd.NA, "full", rule, word_set) for rule in RULES]
            mean, lo, hi = _ci(np.concatenate(blocks, axis=1), n_boot, seed, alpha)
            rows += _rows(key, layers, "speech_mass", cols, mean, lo, hi, int(keep.sum()))
    return _tidy(rows)


def _tidy(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=LENS_COLUMNS)
    frame["k"] = frame["k"].astype("Int64")
    frame["n"] = frame["n"].astype(int)
    return frame


def excess_over_control(
    per_word: pd.DataFrame,
    *,
    metric: str = "transcription",
    k: int = 5,
    vocab: str = "text",
    position_rule: str | None = None,
    words: str = "content",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per layer: mean(hit - control hit) with a paired bootstrap CI over words (same words).

    ``metric`` is ``transcription`` or ``next_word``; words lacking either target are left out
    (n counts the pairs). Rows use the ``lens.csv`` columns with metric ``{metric}_excess``.
    """
    if metric not in ("transcription", "next_word"):
        raise ValueError(f"excess is defined for 'transcription' and 'next_word', not {metric!r}")
    rule = position_rule or METRICS[metric][1][0]
    own_col = rank_column(metric, vocab, rule)
    ctrl_col = rank_column(f"{metric}_control", vocab, rule)
    rows: list[dict] = []
    for key, group, layers in _sorted_groups(per_word):
        own, ctrl = _per_item(group, own_col), _per_item(group, ctrl_col)
        keep = _word_filter(group, METRICS[metric][2], words)
        keep = keep & ~np.isnan(own[:, 0]) & ~np.isnan(ctrl[:, 0])
        n = int(keep.sum())
        a, b = (own[keep] < k).astype(float), (ctrl[keep] < k).astype(float)
        mean, lo, hi = (None,) * 3
        if n:
            mean, lo, hi = paired_excess(a, b, n_boot=n_boot, seed=seed, alpha=alpha)
        cols = [(k, vocab, rule, words)]
        rows += _rows(key, layers, f"{metric}_excess", cols, mean, lo, hi, n)
    return _tidy(rows)


def _longest_run(layers: Sequence[int]) -> list[int]:
    best: list[int] = []
    run: list[int] = []
    for layer in sorted(layers):
        run = run + [layer] if run and layer == run[-1] + 1 else [layer]
        if len(run) > len(best):
            best = run
    return best


def phase_bands(
    result: LensResult | pd.DataFrame,
    *,
    k: int = 5,
    vocab: str = "text",
    words: str = "content",
    speech_threshold: float = 0.5,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Layer bands of the three phases, by these rules (L = number of blocks):

    - ``transcription``: layers 1..L-1 where the paired excess of transcription@k (any position)
      over transcription_control@k, on ``words`` words (all | content), has a 95% CI low > 0.
    - ``next_word``: likewise for next_word@k over next_word_control@k (last position).
    - ``speech``: layers 0..L where mean speech_mass (all spoken words, averaged over each word's
      positions) exceeds ``speech_threshold``.

    The band is the longest contiguous run of qualifying layers (the earliest on ties); empty
    bands have None bounds. ``qualifying`` lists every layer that passed. ``result`` is a
    :class:`LensResult` or a per-word frame.
    """
    per_word = result.words if isinstance(result, LensResult) else result
    rows = []
    excess = {
        phase: excess_over_control(
            per_word, metric=phase, k=k, vocab=vocab, words=words, n_boot=n_boot, seed=seed
        )
        for phase in ("transcription", "next_word")
    }
    for key, group, layers in _sorted_groups(per_word):
        last = int(layers.max())
        for phase, frame in excess.items():
            sel = frame[(frame[LENS_COLUMNS[:3]] == list(key)).all(axis=1)]
            ok = sel[(sel["ci_low"] > 0) & (sel["layer"] > 0) & (sel["layer"] < last)]
            rule = f"paired excess of {phase}@{k} over its control, CI low > 0, layers 1..L-1"
            rows.append(_band(key, phase, ok["layer"].tolist(), rule))
        mass = np.nanmean(_per_item(group, "speech_mass_any"), axis=0)
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


__all__ = [
    "LENS_COLUMNS",
    "Lens",
    "LensResult",
    "LogitLens",
    "RANK_COLUMNS",
    "Scores",
    "TunedLens",
    "Unembedding",
    "as_lens",
    "excess_over_control",
    "kl_to_final",
    "lens_top_tokens",
    "phase_bands",
    "rank_column",
    "run_lens",
    "score_hidden",
    "summarize",
]
