"""The residual stream of every layer, under the same names on both backends.

Names follow TransformerLens: ``blocks.{i}.hook_resid_pre`` (input of block i) and
``blocks.{i}.hook_resid_post`` (output of block i). On nnsight they are read from the HF decoder
layer's input and output inside a trace that holds nothing but tensor indexing, so it runs on a
remote NDIF server too (``remote=True``) or in nnsight's local simulation (``remote="local"``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from speech_interp.hooks import submodule
from speech_interp.models import backend_of, hf_model

_NAME = re.compile(r"blocks\.(\d+)\.hook_resid_(pre|post)")


def n_layers(model) -> int:
    """Number of decoder blocks."""
    return int(hf_model(model).config.num_hidden_layers)


def resid_names(model, kind: str = "pre") -> list[str]:
    """Residual-stream names, ``kind`` = "pre", "post" or "all" (pre of every block + final post).

    "all" gives L+1 streams: the input to each block and the last block's output (before the
    final norm), the usual logit-lens stack.
    """
    L = n_layers(model)
    if kind == "pre":
        return [f"blocks.{i}.hook_resid_pre" for i in range(L)]
    if kind == "post":
        return [f"blocks.{i}.hook_resid_post" for i in range(L)]
    if kind == "all":
        return resid_names(model, "pre") + [f"blocks.{L - 1}.hook_resid_post"]
    raise ValueError(f"kind must be 'pre', 'post' or 'all', got {kind!r}")


def _parse(names: list[str], L: int) -> list[tuple[int, str]]:
    parsed = []
    for name in names:
        m = _NAME.fullmatch(name)
        if not m:
            raise ValueError(f"not a residual-stream name: {name!r} (want blocks.i.hook_resid_*)")
        layer = int(m.group(1))
        if layer >= L:
            raise ValueError(f"{name!r}: layer {layer} out of range for a {L}-layer model")
        parsed.append((layer, m.group(2)))
    return parsed


def no_logits_kwargs(model) -> dict:
    """Forward kwargs that skip the model's own output logits (all residuals stay exact).

    HF causal LMs take ``logits_to_keep``: with 1, the unembedding runs on the last position only,
    so reading residuals never allocates positions x vocab (150k-token vocabularies).
    """
    params = inspect.signature(hf_model(model).forward).parameters
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}


def get_residuals(
    model,
    input_ids: Int[Tensor, "batch pos"],
    names: list[str] | None = None,
    *,
    remote: bool | str = False,
) -> dict[str, Float[Tensor, "batch pos d_model"]]:
    """Run one forward pass and return the requested residual streams (default: "all").

    The model's own logits are computed for the last position only (:func:`no_logits_kwargs`).
    """
    names = resid_names(model, "all") if names is None else list(names)
    parsed = _parse(names, n_layers(model))
    if input_ids.ndim == 1:
        input_ids = einops.rearrange(input_ids, "pos -> 1 pos")
    if backend_of(model) == "tl":
        if remote:
            raise ValueError("remote execution needs the nnsight backend")
        with torch.no_grad():
            wanted = set(names)
            _, cache = model.run_with_cache(
                input_ids, names_filter=lambda n: n in wanted, **no_logits_kwargs(model)
            )
        return {n: cache[n].detach() for n in names}
    return _nnsight_residuals(model, input_ids, names, parsed, remote)


def _nnsight_residuals(model, input_ids, names, parsed, remote) -> dict[str, Tensor]:
    blocks = submodule(model, "blocks")
    # nnsight reads values in execution order: sort requests by (layer, pre before post).
    order = sorted(range(len(names)), key=lambda j: (parsed[j][0], parsed[j][1] == "post"))
    saved: dict[str, object] = {}
    with model.trace(input_ids, remote=remote, **no_logits_kwargs(model)):
        for j in order:
            layer, kind = parsed[j]
            block = blocks[layer]
            value = block.input if kind == "pre" else block.output
            saved[names[j]] = value.save()
    return {n: _tensor(saved[n]).detach() for n in names}


def _tensor(value) -> Tensor:
    """Decoder layers return a tensor (transformers 5) or a tuple whose first item is it."""
    return value[0] if isinstance(value, tuple) else value


def residual_stack(
    model, input_ids: Int[Tensor, "batch pos"], *, remote: bool | str = False
) -> Float[Tensor, "layer batch pos d_model"]:
    """The L+1 residual streams ("all") stacked along a leading layer axis."""
    names = resid_names(model, "all")
    res = get_residuals(model, input_ids, names, remote=remote)
    return torch.stack([res[n] for n in names])


def residual_stacks(
    model, prompts: Sequence[Int[Tensor, " pos"]], *, remote: bool | str = False
) -> list[Float[Tensor, "layer pos d_model"]]:
    """:func:`residual_stack` of several prompts of different lengths from one forward pass.

    The prompts are right-padded (with token 0) into one batch; in a causal LM a position never
    attends to the positions after it, so each prompt's streams equal its own forward pass's up
    to float rounding of the other batch shape (tested on both backends; bit for bit on the
    shipped organism) and the padding is cut off again.
    """
    if not prompts:
        return []
    lengths = [int(p.numel()) for p in prompts]
    batch = torch.zeros(len(prompts), max(lengths), dtype=torch.long)
    for row, (ids, n) in enumerate(zip(prompts, lengths, strict=True)):
        batch[row, :n] = ids.reshape(-1)
    stack = residual_stack(model, batch, remote=remote)
    return [stack[:, row, :n] for row, n in enumerate(lengths)]


__all__ = ["get_residuals", "n_layers", "resid_names", "residual_stack", "residual_stacks"]
