"""The model's final norm and unembedding on the client, and memory-bounded vocabulary scoring.

:func:`score_hidden` walks the unembedding in ``chunk_size`` rows and never holds positions x
vocab: per (position, token) query it counts the tokens with a strictly larger logit (rank; ties
count in the target's favour, the target itself is never counted; the target's logit is the one
its own chunk computes, so ties are judged on equal terms), and per position it keeps a
running log-sum-exp over the full vocabulary and over speech units (float32 within a chunk,
accumulated across chunks in float64), and the best text token.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import chain

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

    def split(self, n: int) -> list[Scores]:
        """Cut scores of ``n`` equal stacked blocks (queries and positions) into ``n`` Scores."""
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


def score_hidden(
    hidden: Float[Tensor, "pos d"],
    unembed: Unembedding,
    query_pos: Int[Tensor, " q"],
    query_tok: Int[Tensor, " q"],
    layout: TokenLayout,
    chunk_size: int = 8192,
) -> Scores:
    """Walk the vocabulary in chunks: ranks of (position, token) queries and per-position sums.

    ``hidden`` are final-norm outputs; query ``j`` asks for token ``query_tok[j]`` at row
    ``query_pos[j]`` of ``hidden``. Memory is O(pos x chunk_size), never pos x vocab.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    V = unembed.vocab_size
    if layout.vocab_size != V:
        raise ValueError(f"token layout has {layout.vocab_size} ids, the unembedding {V} rows")
    dev = hidden.device
    query_pos, query_tok = query_pos.to(dev).long(), query_tok.to(dev).long()
    if query_tok.numel() and (query_tok.min() < 0 or query_tok.max() >= V):
        raise ValueError(f"query tokens must lie in 0..{V - 1}")
    text_mask = layout.text_mask.to(dev)
    not_text = torch.where(text_mask, 0.0, -torch.inf)
    speech_ids = layout.speech_mask.nonzero().squeeze(-1).to(dev)
    n_pos, n_q = hidden.shape[0], query_tok.numel()
    # The target's own logit is read from its chunk's logits, so the ranks compare values computed
    # the same way (a separately computed dot product can differ in the last bits and break ties).
    # Before that chunk is reached, comparisons use an estimate: tokens clearly above it count at
    # once, tokens within the estimate's float32 error bound are kept and compared at the end.
    h_q = hidden[query_pos]
    w_q = unembed.weight[query_tok.to(unembed.weight.device)].to(dev).float()
    approx = (h_q * w_q).sum(-1)
    if unembed.bias is not None:
        approx = approx + unembed.bias.to(dev)[query_tok].float()
    d = hidden.shape[-1]
    gamma = d * 2.0**-24 / (1 - d * 2.0**-24)
    tol = 2 * gamma * (h_q.abs() * w_q.abs()).sum(-1) + 2.0**-22 * approx.abs() + 1e-30
    target = approx.clone()
    rank_text = torch.zeros(n_q, dtype=torch.long, device=dev)
    rank_full = torch.zeros(n_q, dtype=torch.long, device=dev)
    near: list[tuple[Tensor, Tensor, Tensor]] = []  # (query, token id, logit) within the bound
    lse_all = torch.full((n_pos,), -torch.inf, device=dev, dtype=torch.float64)
    lse_speech = torch.full((n_pos,), -torch.inf, device=dev, dtype=torch.float64)
    top_logit = torch.full((n_pos,), -torch.inf, device=dev)
    top_id = torch.full((n_pos,), -1, dtype=torch.long, device=dev)
    q_index = torch.arange(n_q, device=dev)
    for start in range(0, V, chunk_size):
        stop = min(V, start + chunk_size)
        logits = unembed.logits(hidden, start, stop)
        t_mask = text_mask[start:stop]
        lse_all = torch.logaddexp(lse_all, logits.logsumexp(-1).double())
        s_ids = speech_ids[(speech_ids >= start) & (speech_ids < stop)] - start
        if s_ids.numel():
            s_lse = logits.index_select(-1, s_ids).logsumexp(-1).double()
            lse_speech = torch.logaddexp(lse_speech, s_lse)
        if t_mask.any():
            best, idx = (logits + not_text[start:stop]).max(-1)
            better = best > top_logit
            top_logit = torch.where(better, best, top_logit)
            top_id = torch.where(better, idx + start, top_id)
        if n_q:
            picked = logits.index_select(0, query_pos)
            own = (query_tok >= start) & (query_tok < stop)
            target[own] = picked[q_index[own], query_tok[own] - start]
            above = picked > (approx + tol)[:, None]
            maybe = (picked >= (approx - tol)[:, None]) & ~above
            above[q_index[own], query_tok[own] - start] = False  # never count the target itself
            maybe[q_index[own], query_tok[own] - start] = False
            rank_full += _count(above)
            rank_text += _count(above & t_mask)
            if maybe.any():
                q, col = maybe.nonzero(as_tuple=True)
                near.append((q, col + start, picked[q, col]))
    if near:
        q, tok, value = (torch.cat(parts) for parts in zip(*near, strict=True))
        counts = (value > target[q]).long()
        rank_full.index_add_(0, q, counts)
        rank_text.index_add_(0, q, counts * text_mask[tok].long())
    return Scores(target, rank_text, rank_full, lse_all, lse_speech, top_id, top_logit)


__all__ = ["Scores", "Unembedding", "causal_lm", "score_hidden"]
