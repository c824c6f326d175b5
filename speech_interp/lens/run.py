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

from speech_interp.core.residuals import n_layers, residual_stack, residual_stacks
from speech_interp.data.prompt import Prompt
from speech_interp.data.targets import MISSING, TargetResolver, draw_controls
from speech_interp.data.uniqueness import uniqueness_points
from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.lens.lenses import Lens, as_lens
from speech_interp.lens.metrics import (
    POSITION_RULES,
    RANK_COLUMNS,
    RANK_KINDS,
    VOCABS,
    excess_over_control,
    summarize,
)
from speech_interp.lens.quality import lens_quality
from speech_interp.lens.unembed import Scores, causal_lm
from speech_interp.models import backend_of, tokenizer_of

_BIG = torch.iinfo(torch.long).max


# query kinds: the word's own target, its drawn control, the next word's target and its control;
# kinds from N_KINDS on are the members of the word's control pool (expected control)
OWN, CONTROL, NEXT, NEXT_CONTROL = range(4)
VOCAB_RULES = [f"{v}_{r}" for v in VOCABS for r in POSITION_RULES]  # keys of _aggregate's ranks
N_KINDS = 4


@dataclass
class _Plan:
    """What to score in one prompt: rows to read, (row, token) queries and pooled queries.

    Rows are every scored word's positions (``slot_of_row``) then each word's pre-onset position
    (the position before its first token). Each query carries the position rules it counts for.
    """

    rows: Int[Tensor, " r"]  # prompt positions to read
    slot_of_row: Int[Tensor, " r"]  # word slot of a word row; -1 for a pre-onset row
    last_of_slot: Int[Tensor, " s"]  # row index of each slot's last position
    query_row: Int[Tensor, " q"]
    query_tok: Int[Tensor, " q"]
    query_group: Int[Tensor, " q"]  # slot * n_kinds + kind
    query_rules: dict[str, Tensor]  # position rule -> bool per query
    pool_query: Int[Tensor, " pq"]  # slot of each max-pooled query
    pool_tok: Int[Tensor, " pq"]
    pool_group: Int[Tensor, " pq"]
    n_slots: int
    n_kinds: int


def word_unit_positions(prompt: Prompt, layout: TokenLayout, w: int, n_units: int) -> list[int]:
    """Prompt positions of word ``w``'s unit tokens, one per unit (markers, pitch or style
    tokens inside the word are not units)."""
    pos = prompt.word_positions[w]
    units = layout.tokens_to_units(prompt.input_ids[pos])
    found = pos[units >= 0].tolist()
    if len(found) != n_units:
        raise ValueError(
            f"word {w} ({prompt.words[w]!r}) has {n_units} units but {len(found)} unit tokens in "
            "its prompt; the uniqueness point cannot be placed"
        )
    return found


def _plan(
    prompt: Prompt,
    layout: TokenLayout,
    slots: list[int],
    tokens: list[list[int]],
    unique_at: list[int],
    n_units: list[int],
) -> _Plan:
    """``slots``: spoken word indices; ``tokens[s]``: target ids per kind (-1 = none);
    ``unique_at[s]``: index of the word's uniqueness point among its ``n_units[s]`` units."""
    n_kinds = max(len(t) for t in tokens)
    rows, slot_of_row, last_of_slot = [], [], []
    qr, qt, qg, pq, pt, pg = [], [], [], [], [], []
    flags: dict[str, list[bool]] = {rule: [] for rule in POSITION_RULES if rule != "maxpool"}
    starts = []
    for s, w in enumerate(slots):
        word_pos = prompt.word_positions[w].tolist()
        first = len(rows)
        starts.append(first)
        rows += word_pos
        slot_of_row += [s] * len(word_pos)
        last_of_slot.append(first + len(word_pos) - 1)
    pre_rows = []
    for w in slots:
        pre = int(prompt.word_positions[w][0]) - 1
        pre_rows.append(len(rows) if pre >= 0 else -1)
        if pre >= 0:
            rows.append(pre)
            slot_of_row.append(-1)
    for s, w in enumerate(slots):
        word_pos = prompt.word_positions[w].tolist()
        first, last = starts[s], last_of_slot[s]
        up_pos = word_unit_positions(prompt, layout, w, n_units[s])[unique_at[s]]
        for kind, tok in enumerate(tokens[s]):
            if tok < 0:
                continue
            group = s * n_kinds + kind
            if kind in (NEXT, NEXT_CONTROL):
                cells = [(last, {"last"})]
            else:
                cells = [
                    (first + i, {"any"} | ({"last"} if first + i == last else set())
                     | ({"after_uniqueness"} if p >= up_pos else set()))
                    for i, p in enumerate(word_pos)
                ]  # fmt: skip
                if pre_rows[s] >= 0:
                    cells.append((pre_rows[s], {"pre_onset"}))
                pq.append(s)
                pt.append(tok)
                pg.append(group)
            for row, rules in cells:
                qr.append(row)
                qt.append(tok)
                qg.append(group)
                for rule, col in flags.items():
                    col.append(rule in rules)
    long = torch.long
    return _Plan(
        rows=torch.tensor(rows, dtype=long),
        slot_of_row=torch.tensor(slot_of_row, dtype=long),
        last_of_slot=torch.tensor(last_of_slot, dtype=long),
        query_row=torch.tensor(qr, dtype=long),
        query_tok=torch.tensor(qt, dtype=long),
        query_group=torch.tensor(qg, dtype=long),
        query_rules={rule: torch.tensor(col, dtype=torch.bool) for rule, col in flags.items()},
        pool_query=torch.tensor(pq, dtype=long),
        pool_tok=torch.tensor(pt, dtype=long),
        pool_group=torch.tensor(pg, dtype=long),
        n_slots=len(slots),
        n_kinds=n_kinds,
    )


def _merge_plans(plans: list[_Plan]) -> _Plan:
    """One plan for several prompts whose read rows are concatenated in order: rows, slots and
    pools are offset, and groups renumbered with the largest number of kinds."""
    if len(plans) == 1:
        return plans[0]
    n_kinds = max(p.n_kinds for p in plans)
    parts: dict[str, list[Tensor]] = {}
    row0 = slot0 = 0
    for p in plans:
        slot, kind = p.query_group // p.n_kinds, p.query_group % p.n_kinds
        pool_slot, pool_kind = p.pool_group // p.n_kinds, p.pool_group % p.n_kinds
        shifted = {
            "rows": p.rows,
            "slot_of_row": torch.where(p.slot_of_row >= 0, p.slot_of_row + slot0, -1),
            "last_of_slot": p.last_of_slot + row0,
            "query_row": p.query_row + row0,
            "query_tok": p.query_tok,
            "query_group": (slot + slot0) * n_kinds + kind,
            "pool_query": p.pool_query + slot0,
            "pool_tok": p.pool_tok,
            "pool_group": (pool_slot + slot0) * n_kinds + pool_kind,
        }
        for key, value in shifted.items():
            parts.setdefault(key, []).append(value)
        row0 += len(p.rows)
        slot0 += p.n_slots
    rules = {r: torch.cat([p.query_rules[r] for p in plans]) for r in plans[0].query_rules}
    return _Plan(**{key: torch.cat(v) for key, v in parts.items()}, query_rules=rules,
                 n_slots=slot0, n_kinds=n_kinds)  # fmt: skip


def _aggregate(scores: Scores, plan: _Plan, final_top: Tensor) -> dict[str, np.ndarray]:
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


@dataclass
class LensResult:
    """``summary``: tidy rows with the ``lens.csv`` columns; ``words``: one row per word x layer;
    ``pool``: one row per word x layer x member of its control pool (the expected control);
    ``quality``: one row per layer, the lens's quality and whether it is informative there
    (:func:`speech_interp.lens.quality.lens_quality`)."""

    summary: pd.DataFrame
    words: pd.DataFrame
    missing: pd.DataFrame = field(default_factory=pd.DataFrame)
    pool: pd.DataFrame = field(default_factory=pd.DataFrame)
    quality: pd.DataFrame = field(default_factory=pd.DataFrame)

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
    batch_rows: int = 4096,
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
        batch_rows: utterances are scored in groups of up to this many residual rows (scored
            positions x streams; one utterance at least): one forward pass and one vocabulary
            pass per group. Speed and memory: scoring holds about ``batch_rows x chunk_size /
            streams`` logits; values equal one utterance at a time up to the float rounding of
            a batched forward (bit for bit on the shipped organism and in the tests).
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
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
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
    points = uniqueness_points(utterances)

    meta: list[dict] = []
    values: list[dict[str, np.ndarray]] = []
    pool_rows: list[pd.DataFrame] = []
    n_streams = n_layers(model) + 1
    pending: list[tuple[int, Prompt, list[dict], _Plan]] = []
    final_tops: list[tuple[Tensor, Tensor]] = []  # (item, model's own top-1) per word position

    def flush() -> None:
        """Score the pending utterances: one forward pass, one vocabulary pass."""
        if not pending:
            return
        stacks = residual_stacks(model, [p.input_ids for _, p, _, _ in pending], remote=remote)
        with torch.no_grad():
            plans = [p for *_, p in pending]
            read = [s[:, p.rows.to(s.device)] for s, p in zip(stacks, plans, strict=True)]
            resid = torch.cat(read, dim=1)
            plan = _merge_plans(plans)
            streams = lens_obj.score_streams(
                resid, plan.query_row, plan.query_tok, layout, chunk_size,
                pool_of_pos=plan.slot_of_row, pool_query=plan.pool_query, pool_tok=plan.pool_tok,
            )  # fmt: skip
        final_top = streams[-1].top_full_id
        per_layer = [_aggregate(scores, plan, final_top) for scores in streams]
        word_rows = plan.slot_of_row >= 0
        final_tops.append((plan.slot_of_row[word_rows] + len(meta), final_top.cpu()[word_rows]))
        s = 0
        for u, _, rows, _ in pending:
            for row in rows:
                row["item"] = len(meta)
                meta.append(row)
                values.append(_word_values(per_layer, s))
                pool_rows.append(_pool_values(per_layer, s, row, controls[u][row["word_index"]]))
                s += 1
        bar.update(len(pending))
        pending.clear()

    bar = tqdm(total=len(utterances), desc="lens", unit="utt", disable=not progress)
    for u, utt in enumerate(utterances):
        prompt = utt.to_prompt(layout, tok)
        slots = [i for i, w in enumerate(utt.words) if w.modality == "speech"]
        if not slots:
            bar.update(1)
            continue
        tokens, rows = [], []
        for w in slots:
            row, kinds = _word_meta(utt, prompt, u, w, resolver, controls[u], points[u][w])
            tokens.append(kinds)
            rows.append(row)
        unique_at = [points[u][w].index for w in slots]
        n_units = [len(utt.words[w].units) for w in slots]
        plan = _plan(prompt, layout, slots, tokens, unique_at, n_units)
        held = sum(len(p.rows) for *_, p in pending) * n_streams
        if pending and held + len(plan.rows) * n_streams > batch_rows:
            flush()
        pending.append((u, prompt, rows, plan))
    flush()
    bar.close()
    if not meta:
        raise ValueError("no spoken words to score: every word in the data is a text word")
    words = _words_frame(meta, values, model_id, actual, lens_obj.name, tok)
    pool = _pool_frame(pool_rows)
    pool.insert(0, "lens", lens_obj.name)
    pool.insert(0, "backend", actual)
    pool.insert(0, "model", model_id)
    missing = _report_missing(words)
    summary = summarize(words, ks, pool=pool, n_boot=n_boot, seed=seed)
    items, tops = (torch.cat(parts) for parts in zip(*final_tops, strict=True))
    quality = lens_quality(summary, items.numpy(), tops.numpy())
    return LensResult(summary, words, missing, pool, quality)


def _word_values(per_layer: list[dict[str, np.ndarray]], s: int) -> dict[str, np.ndarray]:
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


def _pool_values(per_layer, s: int, row: dict, control) -> dict[str, np.ndarray]:
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


def _pool_frame(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """One frame from every slot's :func:`_pool_values`."""
    return pd.DataFrame({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})


def _word_meta(
    utt: Utterance, prompt: Prompt, u: int, w: int, resolver, controls, point
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
        "n_units": len(word.units),
        "uniqueness_point": point.index,
        "unique": point.unique,
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
    kinds += [m[1].token_id for m in control.pool] if target.found else []
    return row, kinds


def _words_frame(meta, values, model_id, backend, lens_name, tok) -> pd.DataFrame:
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


__all__ = ["LensResult", "lens_top_tokens", "run_lens", "word_unit_positions"]
