"""The code that runs inside traces: the site accessor, the edit rule and the log-prob read-out.

Written once and used on both backends: the TransformerLens hooks call :func:`apply_edit` and
:func:`log_prob_readout` on cached tensors, the nnsight traces call them (and :func:`site_value`)
on the model's live activations. Nothing here touches an object of this package: plain torch on
tensors and on the envoys of the HF decoder blocks, with module names passed in as strings.

**Remote runs.** An NDIF server has nnsight, torch and the plain HF model, not this package. For
``remote=True`` / ``"local"`` the module is registered with ``nnsight.register`` (cloudpickle's
serialize-by-value), so its functions travel with the request and are rebuilt on the server.
nnsight's local simulation (``remote="local"``) hides this package while it deserializes the
trace, exactly as a server would, so the test suite proves the registration works.
"""

from __future__ import annotations

import sys

import torch


def site_value(block, component: str, attn: str, mlp: str):
    """The activation of ``component`` in a decoder block (a module's envoy inside a trace).

    ``resid_pre``: the block's input; ``attn_out``: the first item of its attention's output;
    ``mlp_out``: its MLP's output; ``resid_post``: its output. ``attn`` / ``mlp`` are the
    attribute names of the attention and MLP inside the block.
    """
    if component == "resid_pre":
        x = block.input
    elif component == "attn_out":
        x = getattr(block, attn).output[0]
    elif component == "mlp_out":
        x = getattr(block, mlp).output
    else:
        x = block.output
    return x[0] if isinstance(x, tuple) else x


def apply_edit(x, rows, pos, keep, u, v) -> None:
    """In place: entries ``x[rows[i], pos[i]]`` become ``keep*x - (x.u)u + v`` (the edit rule)."""
    rows, pos = rows.to(x.device), pos.to(x.device)
    sel = x[rows, pos]
    u, v, keep = u.to(sel), v.to(sel), keep.to(sel)  # device and dtype of the model
    x[rows, pos] = keep[:, None] * sel - (sel * u).sum(-1, keepdim=True) * u + v


def log_prob_readout(logits, positions, targets, weights):
    """Per row ``b``: ``sum_q weights[b, q] * log p(targets[b, q] | logits[b, positions[b, q]])``.

    A log-softmax over the full vocabulary, in float32.
    """
    dev = logits.device
    rows = torch.arange(logits.shape[0], device=dev)[:, None]
    lp = logits[rows, positions.to(dev)].float().log_softmax(-1)
    picked = lp.gather(-1, targets.to(dev)[..., None])[..., 0]
    return (picked * weights.to(dev)).sum(-1)


def ship_with_remote_traces() -> None:
    """Register this module with nnsight so remote traces carry it by value (idempotent)."""
    import nnsight

    nnsight.register(sys.modules[__name__])


__all__ = ["apply_edit", "log_prob_readout", "ship_with_remote_traces", "site_value"]
