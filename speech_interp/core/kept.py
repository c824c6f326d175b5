"""A prompt run once with its KV cache and block inputs kept, so that later batches of edits on
that prompt compute only what their edits can change (local nnsight models).

**Rule.** No edit can change the tokens before the batch's first edited or read-out position,
nor the blocks below its lowest edited layer. :func:`run_kept` takes those tokens from the kept
cache (cropped to them and repeated per row) and skips those blocks (nnsight's ``skip``, their
output the kept run's), shifts edit and read-out positions to the suffix, and runs the rest
through :func:`speech_interp.core.edits.run_edited`: the values of the whole prompt through
every block, to float rounding. TransformerLens's bridge does not fill HF caches and NDIF runs
are not ours to cache, so :func:`keep_run` gives None there and callers run the whole prompt.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from speech_interp.core.edits import Edit, Readout, run_edited
from speech_interp.core.memory import model_device
from speech_interp.core.residuals import no_logits_kwargs
from speech_interp.models import backend_of, hf_model


@dataclass
class KeptRun:
    """The unedited run of one prompt: its ids, KV cache and every block's input (``resid[l]``
    is block l's input, ``resid[L]`` the last block's output)."""

    ids: Int[Tensor, " pos"]
    cache: object  # an HF cache of the whole prompt
    resid: tuple[Float[Tensor, "1 pos d"], ...]


def keep_run(model, ids: Int[Tensor, " pos"], remote: bool | str = False) -> KeptRun | None:
    """``ids`` run once with the cache and residuals kept; None where batches must run the whole
    prompt through every block (TransformerLens, remote runs, a model without an HF cache)."""
    if remote or backend_of(model) != "nnsight":
        return None
    with torch.no_grad():  # its logits are not read: the last position's only
        out = hf_model(model)(
            ids[None], use_cache=True, output_hidden_states=True, **no_logits_kwargs(model)
        )
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if cache is None or cache.get_seq_length() != len(ids):
        return None
    return KeptRun(ids, cache, tuple(h.detach() for h in out.hidden_states))


def run_kept(
    model, kept: KeptRun, edits: list[Edit], readout: Readout, batch: int
) -> Float[Tensor, " batch"]:
    """``batch`` copies of the kept prompt with ``edits`` applied (rule in the module docstring);
    positions count from the prompt's start, as for :func:`~speech_interp.core.edits.run_edited`."""
    if not edits:
        raise ValueError("run_kept needs at least one edit (the unedited run is kept already)")
    start = min(min(int(e.positions.min()) for e in edits), int(readout.positions.min()))
    first = min(e.layer for e in edits)
    cache = None
    if start > 0:
        cache = copy.deepcopy(kept.cache)
        cache.crop(start - len(kept.ids))  # negative: drop that many from the end
        cache.batch_repeat_interleave(batch)
    shifted = [replace(e, positions=e.positions - start) for e in edits]
    # a skipped block's output, as the blocks return it; the input of the first block run is a
    # copy (edits write into it), the others are views
    skip = {i: einops.repeat(kept.resid[i + 1][:, start:], "1 pos d -> b pos d", b=batch)
            for i in range(first)}  # fmt: skip
    if first:
        skip[first - 1] = skip[first - 1].contiguous()
    ids = einops.repeat(kept.ids[start:], "pos -> b pos", b=batch).to(model_device(model))
    suffix = Readout(readout.positions - start, readout.targets, readout.weights)
    return run_edited(model, ids, shifted, suffix, prefix_cache=cache, skip_blocks=skip)


__all__ = ["KeptRun", "keep_run", "run_kept"]
