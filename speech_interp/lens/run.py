"""Run a lens over the L+1 residual streams of every utterance: one row per spoken word x layer.

Streams are those of :func:`speech_interp.core.residuals.residual_stack`: stream ``l < L`` is block
l's input, stream ``L`` the last block's output before the final norm. A lens
(:mod:`speech_interp.lens.lenses`) maps a stream to the model's final-norm input, then the model's
own final norm and unembedding apply on the client (plain torch, float32). Scoring
(:mod:`speech_interp.lens.unembed`) never holds layers x positions x vocab: it reads the residuals
at the needed positions only and walks the unembedding in ``chunk_size`` rows, accumulating per
position the targets' ranks, running log-sum-exps over the full vocabulary and over speech units,
and the best text token. The per-word ranks become rates in :mod:`speech_interp.lens.metrics`.

This module runs the pipeline: :mod:`speech_interp.lens.plan` says what to score,
:mod:`speech_interp.lens.frames` turns the scores into the per-word frames.

Only spoken words are scored (text words serve as next words). Words whose target is missing stay
in the per-word frame with NaN ranks and ``target_rule == "missing"``, are counted in
:attr:`LensResult.missing` and raise a warning; they are out of every rate's n.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.core.residuals import residual_stack, residual_stacks
from speech_interp.core.runs import run_context
from speech_interp.data.prompt import Prompt
from speech_interp.data.targets import TargetResolver, draw_controls
from speech_interp.data.uniqueness import uniqueness_points
from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.lens.frames import (
    aggregate,
    pool_frame,
    pool_values,
    report_missing,
    word_values,
    words_frame,
)
from speech_interp.lens.lenses import Lens
from speech_interp.lens.metrics import excess_over_control, summarize
from speech_interp.lens.plan import Plan, merge_plans, plan_utterance
from speech_interp.lens.quality import lens_quality
from speech_interp.lens.registry import as_lens


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
    ctx = run_context(model, remote, tokenizer, model_id)
    if backend is not None and backend != ctx.backend:
        raise ValueError(f"backend={backend!r} but the model is a {ctx.backend!r} model")
    lens_obj = as_lens(lens, model)
    resolver = TargetResolver(ctx.tokenizer, layout)
    controls = draw_controls(utterances, resolver, seed=seed)
    points = uniqueness_points(utterances)

    meta: list[dict] = []
    values: list[dict] = []
    pool_rows: list[dict] = []
    n_streams = ctx.n_layers + 1
    pending: list[tuple[int, Prompt, list[dict], Plan]] = []
    final_tops: list[tuple[Tensor, Tensor]] = []  # (item, model's own top-1) per word position

    def flush() -> None:
        """Score the pending utterances: one forward pass, one vocabulary pass."""
        if not pending:
            return
        plan, per_layer, final_top = _score_group(
            model, lens_obj, layout, pending, chunk_size, ctx.remote
        )
        word_rows = plan.slot_of_row >= 0
        final_tops.append((plan.slot_of_row[word_rows] + len(meta), final_top.cpu()[word_rows]))
        s = 0
        for u, _, rows, _ in pending:
            for row in rows:
                row["item"] = len(meta)
                meta.append(row)
                values.append(word_values(per_layer, s))
                pool_rows.append(pool_values(per_layer, s, row, controls[u][row["word_index"]]))
                s += 1
        bar.update(len(pending))
        pending.clear()

    bar = tqdm(total=len(utterances), desc="lens", unit="utt", disable=not progress)
    for u, utt in enumerate(utterances):
        prompt = utt.to_prompt(layout, ctx.tokenizer)
        planned = plan_utterance(utt, prompt, u, layout, resolver, controls[u], points[u])
        if planned is None:
            bar.update(1)
            continue
        rows, plan = planned
        held = sum(len(p.rows) for *_, p in pending) * n_streams
        if pending and held + len(plan.rows) * n_streams > batch_rows:
            flush()
        pending.append((u, prompt, rows, plan))
    flush()
    bar.close()
    if not meta:
        raise ValueError("no spoken words to score: every word in the data is a text word")
    names = (ctx.model_id, ctx.backend, lens_obj.name)
    words = words_frame(meta, values, *names, ctx.tokenizer)
    pool = pool_frame(pool_rows, *names)
    missing = report_missing(words)
    summary = summarize(words, ks, pool=pool, n_boot=n_boot, seed=seed)
    items, tops = (torch.cat(parts) for parts in zip(*final_tops, strict=True))
    quality = lens_quality(summary, items.numpy(), tops.numpy())
    return LensResult(summary, words, missing, pool, quality)


def _score_group(model, lens_obj: Lens, layout: TokenLayout, pending, chunk_size: int, remote):
    """(merged plan, per-stream :func:`aggregate` values, the model's own top-1 per read row) of
    the ``pending`` (utterance, prompt, rows, plan) group: one forward, one vocabulary pass."""
    stacks = residual_stacks(model, [p.input_ids for _, p, _, _ in pending], remote=remote)
    with torch.no_grad():
        plans = [p for *_, p in pending]
        read = [s[:, p.rows.to(s.device)] for s, p in zip(stacks, plans, strict=True)]
        resid = torch.cat(read, dim=1)
        plan = merge_plans(plans)
        streams = lens_obj.score_streams(
            resid, plan.query_row, plan.query_tok, layout, chunk_size,
            pool_of_pos=plan.slot_of_row, pool_query=plan.pool_query, pool_tok=plan.pool_tok,
        )  # fmt: skip
    final_top = streams[-1].top_full_id
    return plan, [aggregate(scores, plan, final_top) for scores in streams], final_top


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
