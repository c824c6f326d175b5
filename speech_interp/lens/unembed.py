"""The model's final norm and unembedding on the client, and memory-bounded vocabulary scoring.

:func:`score_hidden` walks the unembedding in ``chunk_size`` rows and never holds positions x
vocab: per (position, token) query it counts the tokens with a strictly larger logit (rank; ties
count in the target's favour, the target itself is never counted; the target's logit is the one
its own chunk computes, so ties are judged on equal terms), and per position it keeps a
running log-sum-exp over the full vocabulary and over speech units (float32 within a chunk,
accumulated across chunks in float64), and the best text token. Max-pooled queries (the rank of
a token in the element-wise max of several positions' logits) are counted in the same pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import chain

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformers import PreTrainedModel

from speech_interp.hooks import TokenLayout, submodule
from speech_interp.models import hf_model


def causal_lm(model) -> torch.nn.Module:
    """The HF causal LM behind a TL bridge, an nnsight model or a plain HF model."""
    if isinstance(model, PreTrainedModel):
        return model
    return hf_model(model)


class Unembedding:
    """The model's final norm and unembedding, applied in float32 without gradients to the model.

    Only norm + unembedding: a family's extra output transform (e.g. Gemma-2's logit soft-capping,
    monotonic, so ranks are unchanged) is not applied.
    """

    def __init__(self, norm: torch.nn.Module, weight: Tensor, bias: Tensor | None = None):
        if weight.is_meta:
            raise ValueError(
                "the unembedding weights are not loaded on the client (meta device); the lens "
                "runs on the client, so load the model with its weights (nnsight dispatch=True)"
            )
        self.norm = norm
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        named = chain(norm.named_parameters(), norm.named_buffers())
        self._norm_state = {k: v.detach().float() for k, v in named}

    @classmethod
    def from_model(cls, model) -> Unembedding:
        hf = causal_lm(model)
        head = submodule(hf, "unembed")
        return cls(submodule(hf, "final_norm"), head.weight, getattr(head, "bias", None))

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0])

    @property
    def d_model(self) -> int:
        return int(self.weight.shape[1])

    def normed(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """The final norm applied to ``resid`` (float32)."""
        out = torch.func.functional_call(self.norm, self._norm_state, (resid.float(),))
        return out.float()

    def logits(
        self, normed: Float[Tensor, "... d_model"], start: int = 0, stop: int | None = None
    ) -> Float[Tensor, "... chunk"]:
        """Logits of vocabulary rows ``start:stop`` for final-norm outputs ``normed``."""
        w = self.weight[start:stop].to(normed.device).float()
        b = None if self.bias is None else self.bias[start:stop].to(normed.device).float()
        return F.linear(normed, w, b)


@dataclass
class Scores:
    """Per-query target ranks and per-position vocabulary summaries of one stream."""

    target_logit: Float[Tensor, " q"]
    rank_text: Int[Tensor, " q"]
    rank_full: Int[Tensor, " q"]
    lse_all: Float[Tensor, " pos"]  # float64
    lse_speech: Float[Tensor, " pos"]  # float64
    top_text_id: Int[Tensor, " pos"]
    top_text_logit: Float[Tensor, " pos"]
    pooled_rank_text: Int[Tensor, " pq"]  # ranks of the max-pooled queries
    pooled_rank_full: Int[Tensor, " pq"]
    top_full_id: Int[Tensor, " pos"]  # top-1 over the full vocabulary
    kl_to_ref: Float[Tensor, " pos"]  # float64 KL(reference row || row); NaN without references

    def split(self, n: int) -> list[Scores]:
        """Cut scores of ``n`` equal stacked blocks (queries, pooled queries and positions) into
        ``n`` Scores."""
        fields = [getattr(self, f.name) for f in dataclasses.fields(self)]
        parts = [torch.tensor_split(v, n) for v in fields]
        return [Scores(*(p[i] for p in parts)) for i in range(n)]

    @property
    def speech_mass(self) -> Float[Tensor, " pos"]:
        return torch.exp(self.lse_speech - self.lse_all)

    @property
    def top_text_prob(self) -> Float[Tensor, " pos"]:
        return torch.exp(self.top_text_logit - self.lse_all)


def _count(flags: Bool[Tensor, "q chunk"]) -> Int[Tensor, " q"]:
    """Number of True per row (bytes summed in int32: several times faster than bool.sum)."""
    return flags.view(torch.uint8).sum(-1, dtype=torch.int32)


# Queries per row from which ranks are read off each row's sorted logits instead of counting
# every query against the row: sorting costs about as much as ~4 counting passes (measured on
# CPU), so it pays once a row carries more queries than that (run_lens: ~12 per row).
SORT_FROM_QUERIES_PER_ROW = 4.0


class _RankCounter:
    """Ranks of (row, token) queries against rows of logits that arrive one vocabulary chunk at a
    time. The target's own logit is read from its chunk's logits, so the ranks compare values
    computed the same way (a separately computed dot product can differ in the last bits and break
    ties); from its chunk on, a query compares with it exactly. Before that chunk (only queries
    whose target lies past the first chunk), comparisons use an estimate: tokens clearly above
    it count at once, tokens within the estimate's float32 error bound are kept and compared at
    the end.

    Two ways to count, same ranks: compare every query with its row's chunk (few queries per row),
    or sort each row's chunk once (text and other tokens apart; the full rank is their sum) and
    binary-search every query's threshold in it (many queries per row)."""

    def __init__(self, rows: Tensor, tok: Tensor, approx: Tensor, tol: Tensor):
        self.rows, self.tok, self.approx, self.tol = rows, tok, approx, tol
        self.target = approx.clone()
        n = tok.numel()
        self.rank_text = torch.zeros(n, dtype=torch.long, device=tok.device)
        self.rank_full = torch.zeros(n, dtype=torch.long, device=tok.device)
        self.index = torch.arange(n, device=tok.device)
        # (query, logit, is text) of tokens within an estimate's error bound
        self.near: list[tuple[Tensor, Tensor, Tensor]] = []
        uniq, slot = torch.unique(rows, return_inverse=True) if n else (rows, rows)
        self.sort = n > 0 and n >= SORT_FROM_QUERIES_PER_ROW * max(1, uniq.numel())
        if self.sort:
            # queries laid out as a (row, column) table, the shape searchsorted takes
            order = torch.argsort(slot, stable=True)
            counts = torch.bincount(slot, minlength=uniq.numel())
            first = torch.cumsum(counts, 0) - counts
            col = torch.empty_like(slot)
            col[order] = torch.arange(n, device=tok.device) - first[slot[order]]
            self.uniq, self.slot, self.col, self.width = uniq, slot, col, int(counts.max())

    def update(self, row_logits: Tensor, start: int, stop: int, t_mask: Tensor) -> None:
        if not self.tok.numel():
            return
        own = (self.tok >= start) & (self.tok < stop)
        if own.any():
            self.target[own] = row_logits[self.rows[own], self.tok[own] - start]
        known = self.tok < stop  # exact target known (its chunk is this one or done)
        high = torch.where(known, self.target, self.approx + self.tol)
        low = self.approx - self.tol
        if self.sort:
            rows = row_logits.index_select(0, self.uniq)
            for is_text, columns in ((True, t_mask), (False, ~t_mask)):
                self._count_sorted(rows[:, columns].sort(-1).values, high, low, known, is_text)
            return
        picked = row_logits.index_select(0, self.rows)
        above = picked > high[:, None]  # strictly above: never the target itself
        self.rank_full += _count(above)
        self.rank_text += _count(above & t_mask)
        if known.all():
            return
        maybe = (picked >= low[:, None]) & ~above & ~known[:, None]
        if maybe.any():
            q, col = maybe.nonzero(as_tuple=True)
            self.near.append((q, picked[q, col], t_mask[col]))

    def _count_sorted(
        self, sorted_rows: Tensor, high: Tensor, low: Tensor, known: Tensor, is_text: bool
    ) -> None:
        width = sorted_rows.shape[-1]
        if not width:
            return
        at_most_high = self._search(sorted_rows, high, right=True)
        self.rank_full += width - at_most_high
        if is_text:
            self.rank_text += width - at_most_high
        if known.all():
            return
        below_low = self._search(sorted_rows, low, right=False)
        n_near = torch.where(known, 0, at_most_high - below_low).clamp_min(0)
        if n_near.any():
            q = torch.repeat_interleave(self.index, n_near)
            first = torch.cumsum(n_near, 0) - n_near
            offset = torch.arange(q.numel(), device=q.device) - first[q]
            values = sorted_rows[self.slot[q], below_low[q] + offset]
            self.near.append((q, values, torch.full_like(q, is_text, dtype=torch.bool)))

    def _search(self, sorted_rows: Tensor, values: Tensor, right: bool) -> Tensor:
        """Per query, the index of its value in its row's sorted values (searchsorted)."""
        table = torch.full((self.uniq.numel(), self.width), torch.inf, device=values.device)
        table[self.slot, self.col] = values
        return torch.searchsorted(sorted_rows, table, right=right)[self.slot, self.col]

    def finish(self) -> tuple[Tensor, Tensor, Tensor]:
        """(target logit, rank among text tokens, rank among all tokens)."""
        if self.near:
            q, value, is_text = (torch.cat(parts) for parts in zip(*self.near, strict=True))
            counts = (value > self.target[q]).long()
            self.rank_full.index_add_(0, q, counts)
            self.rank_text.index_add_(0, q, counts * is_text.long())
        return self.target, self.rank_text, self.rank_full


def _estimate(h: Tensor, w: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Logit estimates ``h . w (+ bias)`` per row pair and their float32 error bounds."""
    approx = (h * w).sum(-1)
    if bias is not None:
        approx = approx + bias
    d = h.shape[-1]
    gamma = d * 2.0**-24 / (1 - d * 2.0**-24)
    tol = 2 * gamma * (h.abs() * w.abs()).sum(-1) + 2.0**-22 * approx.abs() + 1e-30
    return approx, tol


def _query_rows(
    pool_query: Tensor, rows: Tensor, pool_of_row: Tensor, n_pools: int
) -> tuple[Tensor, Tensor]:
    """Every (pooled query, row of its pool) pair as (query index, row), without a queries x
    rows table: O(pairs) memory."""
    order = torch.argsort(pool_of_row, stable=True)
    counts = torch.bincount(pool_of_row, minlength=n_pools)
    starts = torch.cumsum(counts, 0) - counts
    per_query = counts[pool_query]
    q_idx = torch.repeat_interleave(torch.arange(pool_query.numel(), device=rows.device), per_query)
    first = torch.cumsum(per_query, 0) - per_query
    offset = torch.arange(q_idx.numel(), device=rows.device) - first[q_idx]
    return q_idx, rows[order][starts[pool_query][q_idx] + offset]


def score_hidden(
    hidden: Float[Tensor, "pos d"],
    unembed: Unembedding,
    query_pos: Int[Tensor, " q"],
    query_tok: Int[Tensor, " q"],
    layout: TokenLayout,
    chunk_size: int = 8192,
    *,
    pool_of_pos: Int[Tensor, " pos"] | None = None,
    pool_query: Int[Tensor, " pq"] | None = None,
    pool_tok: Int[Tensor, " pq"] | None = None,
    reference_rows: Int[Tensor, " pos"] | None = None,
) -> Scores:
    """Walk the vocabulary in chunks: ranks of (position, token) queries and per-position sums.

    ``hidden`` are final-norm outputs; query ``j`` asks for token ``query_tok[j]`` at row
    ``query_pos[j]`` of ``hidden``. Memory is O(pos x chunk_size), never pos x vocab.

    Max-pooled queries: ``pool_of_pos[p]`` puts row ``p`` in a pool (-1: none); the pool's logits
    are the element-wise max over its rows' logits, and pooled query ``j`` asks for the rank of
    ``pool_tok[j]`` in pool ``pool_query[j]`` (``Scores.pooled_rank_text`` / ``_full``).

    ``reference_rows[p]``: the row whose distribution row ``p`` is compared with
    (``Scores.kl_to_ref``: KL(reference || row) over the full vocabulary, float64, accumulated
    in the same pass as an online softmax-weighted mean: ``KL = E_ref[z_ref - z_p] - lse_ref +
    lse_p``).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    V = unembed.vocab_size
    if layout.vocab_size != V:
        raise ValueError(f"token layout has {layout.vocab_size} ids, the unembedding {V} rows")
    dev = hidden.device
    query_pos, query_tok = query_pos.to(dev).long(), query_tok.to(dev).long()
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    pool_query = empty if pool_query is None else pool_query.to(dev).long()
    pool_tok = empty if pool_tok is None else pool_tok.to(dev).long()
    for toks in (query_tok, pool_tok):
        if toks.numel() and (toks.min() < 0 or toks.max() >= V):
            raise ValueError(f"query tokens must lie in 0..{V - 1}")
    text_mask = layout.text_mask.to(dev)
    not_text = torch.where(text_mask, 0.0, -torch.inf)
    speech_ids = layout.speech_mask.nonzero().squeeze(-1).to(dev)
    n_pos = hidden.shape[0]
    wdev = unembed.weight.device
    bias = None if unembed.bias is None else unembed.bias.to(dev)

    first_stop = min(V, chunk_size)

    def estimate(rows: Tensor, toks: Tensor) -> tuple[Tensor, Tensor]:
        """Estimates and error bounds, computed only where needed: for targets past the first
        chunk (the others are known exactly before any comparison)."""
        approx = torch.zeros(toks.numel(), device=dev)
        tol = torch.zeros(toks.numel(), device=dev)
        need = toks >= first_stop
        if need.any():
            w = unembed.weight[toks[need].to(wdev)].to(dev).float()
            b = None if bias is None else bias[toks[need]].float()
            approx[need], tol[need] = _estimate(hidden[rows[need]], w, b)
        return approx, tol

    counter = _RankCounter(query_pos, query_tok, *estimate(query_pos, query_tok))
    n_pools = 0
    if pool_tok.numel():
        if pool_of_pos is None:
            raise ValueError("pooled queries need pool_of_pos")
        pool_of_pos = pool_of_pos.to(dev).long()
        n_pools = int(pool_of_pos.max()) + 1
        pooled_rows = (pool_of_pos >= 0).nonzero().squeeze(-1)
        # a pool's target logit is the max over its rows: estimate it the same way, bound by the
        # largest error bound of those rows
        pool_index = pool_of_pos[pooled_rows]
        approx = torch.zeros(pool_tok.numel(), device=dev)
        bound = torch.zeros(pool_tok.numel(), device=dev)
        if (pool_tok >= first_stop).any():
            q_idx, rows = _query_rows(pool_query, pooled_rows, pool_index, n_pools)
            est, tol = estimate(rows, pool_tok[q_idx])
            approx = approx.fill_(-torch.inf).scatter_reduce(0, q_idx, est, "amax")
            bound = bound.scatter_reduce(0, q_idx, tol, "amax")
        pooled = _RankCounter(pool_query, pool_tok, approx, bound)
    lse_all = torch.full((n_pos,), -torch.inf, device=dev, dtype=torch.float64)
    lse_speech = torch.full((n_pos,), -torch.inf, device=dev, dtype=torch.float64)
    top_logit = torch.full((n_pos,), -torch.inf, device=dev)
    top_id = torch.full((n_pos,), -1, dtype=torch.long, device=dev)
    full_logit = torch.full((n_pos,), -torch.inf, device=dev)
    full_id = torch.full((n_pos,), -1, dtype=torch.long, device=dev)
    if reference_rows is not None:
        reference_rows = reference_rows.to(dev).long()
        weighted = torch.zeros(n_pos, device=dev, dtype=torch.float64)  # E_ref[z_ref - z] so far
    for start in range(0, V, chunk_size):
        stop = min(V, start + chunk_size)
        logits = unembed.logits(hidden, start, stop)
        t_mask = text_mask[start:stop]
        chunk_lse = logits.logsumexp(-1).double()
        if reference_rows is not None:
            ref_lse = torch.logaddexp(lse_all, chunk_lse)[reference_rows]  # after this chunk
            ref = logits.index_select(0, reference_rows)
            w = torch.exp(ref - ref_lse[:, None].float())
            part = (w * (ref - logits)).sum(-1, dtype=torch.float64)
            weighted = weighted * torch.exp(lse_all[reference_rows] - ref_lse) + part
        lse_all = torch.logaddexp(lse_all, chunk_lse)
        best_full, idx_full = logits.max(-1)
        better_full = best_full > full_logit
        full_logit = torch.where(better_full, best_full, full_logit)
        full_id = torch.where(better_full, idx_full + start, full_id)
        s_ids = speech_ids[(speech_ids >= start) & (speech_ids < stop)] - start
        if s_ids.numel():
            s_lse = logits.index_select(-1, s_ids).logsumexp(-1).double()
            lse_speech = torch.logaddexp(lse_speech, s_lse)
        if t_mask.any():
            best, idx = (logits + not_text[start:stop]).max(-1)
            better = best > top_logit
            top_logit = torch.where(better, best, top_logit)
            top_id = torch.where(better, idx + start, top_id)
        counter.update(logits, start, stop, t_mask)
        if n_pools:
            rows = logits.index_select(0, pooled_rows)
            pool_logits = torch.full((n_pools, stop - start), -torch.inf, device=dev)
            index = einops.repeat(pool_index, "r -> r c", c=stop - start)
            pool_logits = pool_logits.scatter_reduce(0, index, rows, "amax")
            pooled.update(pool_logits, start, stop, t_mask)
    target, rank_text, rank_full = counter.finish()
    p_rank_text, p_rank_full = empty, empty
    if n_pools:
        _, p_rank_text, p_rank_full = pooled.finish()
    kl = torch.full((n_pos,), torch.nan, device=dev, dtype=torch.float64)
    if reference_rows is not None:
        kl = (weighted - lse_all[reference_rows] + lse_all).clamp_min(0.0)
    return Scores(
        target, rank_text, rank_full, lse_all, lse_speech, top_id, top_logit,
        p_rank_text, p_rank_full, full_id, kl,
    )  # fmt: skip


__all__ = ["Scores", "Unembedding", "causal_lm", "score_hidden"]
