"""The lens as a grid: top-k text tokens at every stream x position of one prompt, and each spoken
word's own text token (probability and rank) at its positions: what the viewer shows.

Probabilities are the lens's full-vocabulary softmax (float32); ranks count the *text* tokens
with a strictly larger logit (the rule of :mod:`speech_interp.lens.metrics`). One stream's logits
over the whole vocabulary are held at a time (positions x vocabulary floats: 150 MB for 250
positions of a 150k vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from speech_interp.core.residuals import residual_stack
from speech_interp.data.prompt import Prompt
from speech_interp.hooks import TokenLayout
from speech_interp.lens.lenses import Lens
from speech_interp.lens.registry import as_lens


@dataclass
class LensGrid:
    """Top-k text tokens per stream and position, and the own-token values of word positions."""

    top_ids: Int[Tensor, "layer pos k"]
    top_probs: Float[Tensor, "layer pos k"]
    own_prob: Float[Tensor, "layer pos"]  # NaN where the position has no own target
    own_rank: Float[Tensor, "layer pos"]  # rank among text tokens; NaN likewise


def lens_grid(
    model,
    layout: TokenLayout,
    prompt: Prompt,
    own_token: Int[Tensor, " pos"],
    lens: str | Lens = "logit",
    *,
    k: int = 5,
    remote: bool | str = False,
) -> LensGrid:
    """The grid of one prompt; ``own_token[p]`` is the target token of the word at position
    ``p`` (-1 where there is none)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if own_token.shape != prompt.input_ids.shape:
        raise ValueError("own_token must hold one entry per prompt position")
    lens_obj = as_lens(lens, model)
    stack = residual_stack(model, prompt.input_ids[None], remote=remote)[:, 0]
    text = layout.text_mask.to(stack.device)
    has_own = own_token >= 0
    own = own_token.clamp_min(0).to(stack.device)
    ids, probs, own_p, own_r = [], [], [], []
    with torch.no_grad():
        for layer in range(stack.shape[0]):
            logits = lens_obj.logits_at(layer, stack[layer]).float()  # [pos, vocab]
            lse = logits.logsumexp(-1, keepdim=True)
            masked = logits.masked_fill(~text, -torch.inf)
            top = masked.topk(min(k, int(text.sum())), dim=-1)
            ids.append(top.indices.cpu())
            probs.append((top.values - lse).exp().cpu())
            target = logits.gather(-1, own[:, None])
            rank = ((masked > target) & text).sum(-1).double()
            own_p.append((target - lse)[:, 0].exp().double().cpu())
            own_r.append(rank.cpu())
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    mask = has_own.cpu()
    return LensGrid(
        torch.stack(ids),
        torch.stack(probs),
        torch.where(mask, torch.stack(own_p), nan).float(),
        torch.where(mask, torch.stack(own_r), nan).float(),
    )


__all__ = ["LensGrid", "lens_grid"]
