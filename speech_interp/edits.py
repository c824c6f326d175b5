"""One forward-pass engine for every causal test, on TransformerLens hooks and nnsight traces.

**Sites** are ``(layer, component)`` with component one of :data:`COMPONENTS`, named the
TransformerLens way (``blocks.{layer}.hook_{component}``). On nnsight they are read from the HF
decoder block: ``resid_pre`` its input, ``attn_out`` its attention's output (first item of the
tuple), ``mlp_out`` its MLP's output, ``resid_post`` its output.

**Edit rule**: an edit at a site changes chosen (row, position) entries ``x`` of the activation to
``keep * x - (x . u) u + v``. Patching sets ``keep=0, u=0, v=clean`` (exact replacement),
direction ablation ``keep=1, u=unit direction, v=0``, steering ``keep=1, u=0, v=delta``. A zero
``u`` and ``v`` with ``keep=1`` changes nothing exactly.

**Readout**: the metric of row ``b`` is ``sum_q weight[b, q] * log p(target[b, q] | logits at
position[b, q])``, a log-softmax over the full vocabulary of the model's own logits, in float32.

Inside nnsight traces there is nothing but tensor indexing and torch arithmetic on plain tensors
(no objects of this package), so the same traces run on NDIF (``remote=True``) and in nnsight's
local simulation of it (``remote="local"``). That is why the editing and capturing traces each
spell out the site lookup and the readout instead of calling a shared helper of this package.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from speech_interp.hooks import get_submodule, module_paths
from speech_interp.models import backend_of, hf_model
from speech_interp.remote import resolve_remote
from speech_interp.residuals import n_layers

COMPONENTS: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "resid_post")
Site = tuple[int, str]


def hook_name(layer: int, component: str) -> str:
    """TransformerLens name of a site."""
    return f"blocks.{layer}.hook_{component}"


def check_site(model, layer: int, component: str) -> None:
    """Raise a clear error for an unknown component or a layer out of range."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}")
    L = n_layers(model)
    if not 0 <= layer < L:
        raise ValueError(f"layer {layer} out of range for a {L}-layer model (0..{L - 1})")


def _order(site: Site) -> tuple[int, int]:
    return site[0], COMPONENTS.index(site[1])


@dataclass
class Edit:
    """Entries ``(rows[i], positions[i])`` of one site become ``keep*x - (x.u)u + v``."""

    layer: int
    component: str
    rows: Int[Tensor, " n"]
    positions: Int[Tensor, " n"]
    keep: Float[Tensor, " n"]
    u: Float[Tensor, "n d"]
    v: Float[Tensor, "n d"]

    @classmethod
    def set(cls, layer, component, rows, positions, values) -> Edit:
        """Replace entries by ``values`` (activation patching)."""
        rows, positions = torch.as_tensor(rows).long(), torch.as_tensor(positions).long()
        values = values.detach().float()
        zeros = torch.zeros_like(values)
        return cls(layer, component, rows, positions, torch.zeros(len(rows)), zeros, values)

    @classmethod
    def project(cls, layer, component, rows, positions, directions) -> Edit:
        """Project unit ``directions`` (one per entry) out of the entries."""
        rows, positions = torch.as_tensor(rows).long(), torch.as_tensor(positions).long()
        u = directions.detach().float()
        return cls(layer, component, rows, positions, torch.ones(len(rows)), u, torch.zeros_like(u))

    @classmethod
    def add(cls, layer, component, rows, positions, deltas) -> Edit:
        """Add ``deltas`` (one per entry) to the entries (steering)."""
        rows, positions = torch.as_tensor(rows).long(), torch.as_tensor(positions).long()
        v = deltas.detach().float()
        return cls(layer, component, rows, positions, torch.ones(len(rows)), torch.zeros_like(v), v)


@dataclass
class Readout:
    """Which log-probabilities each row sums (see the module docstring)."""

    positions: Int[Tensor, "batch q"]
    targets: Int[Tensor, "batch q"]
    weights: Float[Tensor, "batch q"]

    @classmethod
    def same(cls, batch: int, positions, targets) -> Readout:
        """Every row reads the same positions and targets with weight 1."""
        pos = torch.as_tensor(positions).long().reshape(1, -1).expand(batch, -1).contiguous()
        tgt = torch.as_tensor(targets).long().reshape(1, -1).expand(batch, -1).contiguous()
        return cls(pos, tgt, torch.ones(pos.shape, dtype=torch.float32))

    def rows(self, batch: int) -> Readout:
        if self.positions.shape[0] == batch:
            return self
        if self.positions.shape[0] != 1:
            raise ValueError(f"readout has {self.positions.shape[0]} rows, the batch {batch}")
        return Readout(
            *(
                t.expand(batch, -1).contiguous()
                for t in (self.positions, self.targets, self.weights)
            )
        )


def metric_from_logits(
    logits: Float[Tensor, "batch pos vocab"], readout: Readout
) -> Float[Tensor, " batch"]:
    """The readout metric of each row from full logits (client side)."""
    r = readout.rows(logits.shape[0])
    dev = logits.device
    b_idx = torch.arange(logits.shape[0], device=dev)[:, None]
    lp = logits[b_idx, r.positions.to(dev)].float().log_softmax(-1)
    picked = lp.gather(-1, r.targets.to(dev)[..., None])[..., 0]
    return (picked * r.weights.to(dev)).sum(-1)


def _merge(edits: list[Edit]) -> dict[Site, tuple[Tensor, ...]]:
    """One plain tuple of tensors per site: (rows, positions, keep, u, v)."""
    by_site: dict[Site, list[Edit]] = defaultdict(list)
    for e in edits:
        by_site[(e.layer, e.component)].append(e)
    merged = {}
    for site, group in sorted(by_site.items(), key=lambda kv: _order(kv[0])):
        merged[site] = tuple(
            torch.cat([getattr(e, f) for e in group])
            for f in ("rows", "positions", "keep", "u", "v")
        )
    return merged


def _apply(x: Tensor, edit: tuple[Tensor, ...]) -> Tensor:
    """The edit rule on a cloned activation (TransformerLens hooks)."""
    rows, pos, keep, u, v = (t.to(x.device) for t in edit)
    x = x.clone()
    sel = x[rows, pos]
    u, v = u.to(sel.dtype), v.to(sel.dtype)
    x[rows, pos] = keep.to(sel.dtype)[:, None] * sel - (sel * u).sum(-1, keepdim=True) * u + v
    return x


def _check(model, input_ids, edits, sites=()) -> tuple[str, Tensor]:
    backend = backend_of(model)
    for e in edits:
        check_site(model, e.layer, e.component)
    for layer, comp in sites:
        check_site(model, layer, comp)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, pos], got shape {tuple(input_ids.shape)}")
    return backend, input_ids


def run_edited(
    model,
    input_ids: Int[Tensor, "batch pos"],
    edits: list[Edit],
    readout: Readout,
    *,
    remote: bool | str = False,
) -> Float[Tensor, " batch"]:
    """One forward pass with ``edits`` applied; the readout metric of every row."""
    backend, input_ids = _check(model, input_ids, edits)
    remote = resolve_remote(remote, backend)
    merged = _merge(edits)
    r = readout.rows(input_ids.shape[0])
    if backend == "tl":
        hooks = [(hook_name(*site), _tl_hook(e)) for site, e in merged.items()]
        with torch.no_grad():
            logits = model.run_with_hooks(input_ids, fwd_hooks=hooks)
        return metric_from_logits(logits, r).detach().cpu()
    with torch.no_grad():
        return _nn_edited(model, input_ids, merged, r, remote).detach().cpu()


def _tl_hook(edit):
    def hook(x, hook):
        return _apply(x, edit)

    return hook


def _envoys(model):
    """(blocks, attention attribute name) of an nnsight model."""
    model_type = model.config.model_type
    blocks = get_submodule(model, module_paths(model_type).blocks)
    return blocks, "attn" if model_type == "gpt2" else "self_attn"


def _nn_edited(model, input_ids, merged, r, remote) -> Tensor:
    blocks, attn_name = _envoys(model)
    b_idx = torch.arange(input_ids.shape[0])[:, None]
    r_pos, r_tgt, r_w = r.positions, r.targets, r.weights
    out = {}
    with model.trace(input_ids, remote=remote):
        for (layer, comp), (rows, pos, keep, u, v) in merged.items():
            block = blocks[layer]
            if comp == "resid_pre":
                x = block.input
            elif comp == "attn_out":
                x = getattr(block, attn_name).output[0]
            elif comp == "mlp_out":
                x = block.mlp.output
            else:
                x = block.output
            x = x[0] if isinstance(x, tuple) else x
            rows, pos = rows.to(x.device), pos.to(x.device)
            sel = x[rows, pos]
            u, v, keep = u.to(sel), v.to(sel), keep.to(sel)  # device and dtype of the model
            x[rows, pos] = keep[:, None] * sel - (sel * u).sum(-1, keepdim=True) * u + v
        logits = model.output.logits
        dev = logits.device
        lp = logits[b_idx.to(dev), r_pos.to(dev)].float().log_softmax(-1)
        picked = lp.gather(-1, r_tgt.to(dev)[..., None])[..., 0]
        out["metric"] = (picked * r_w.to(dev)).sum(-1).save()
    return out["metric"]


def capture(
    model,
    input_ids: Int[Tensor, "batch pos"],
    sites: list[Site],
    readout: Readout,
    *,
    remote: bool | str = False,
) -> tuple[dict[Site, Float[Tensor, "batch pos d_model"]], Float[Tensor, " batch"]]:
    """Activations at ``sites`` and the readout metric of one plain forward pass."""
    backend, input_ids = _check(model, input_ids, [], sites)
    remote = resolve_remote(remote, backend)
    sites = sorted(set(sites), key=_order)
    r = readout.rows(input_ids.shape[0])
    if backend == "tl":
        names = {hook_name(*s) for s in sites}
        with torch.no_grad():
            logits, cache = model.run_with_cache(input_ids, names_filter=lambda n: n in names)
        acts = {s: cache[hook_name(*s)].detach() for s in sites}
        return acts, metric_from_logits(logits, r).detach().cpu()
    with torch.no_grad():
        acts, metric = _nn_capture(model, input_ids, sites, r, remote, grads=False)
    return acts, metric


def _nn_capture(model, input_ids, sites, r, remote, grads: bool):
    blocks, attn_name = _envoys(model)
    b_idx = torch.arange(input_ids.shape[0])[:, None]
    r_pos, r_tgt, r_w = r.positions, r.targets, r.weights
    saved: dict = {}
    grad_saved: dict = {}
    with model.trace(input_ids, remote=remote):
        live = {}
        if grads:
            blocks[0].input.requires_grad_(True)
        for layer, comp in sites:
            block = blocks[layer]
            if comp == "resid_pre":
                x = block.input
            elif comp == "attn_out":
                x = getattr(block, attn_name).output[0]
            elif comp == "mlp_out":
                x = block.mlp.output
            else:
                x = block.output
            x = x[0] if isinstance(x, tuple) else x
            live[(layer, comp)] = x
            saved[(layer, comp)] = x.detach().save()
        logits = model.output.logits
        dev = logits.device
        lp = logits[b_idx.to(dev), r_pos.to(dev)].float().log_softmax(-1)
        picked = lp.gather(-1, r_tgt.to(dev)[..., None])[..., 0]
        metric = (picked * r_w.to(dev)).sum(-1)
        saved["metric"] = metric.detach().save()
        if grads:
            with metric.sum().backward():
                for site in reversed(sites):
                    grad_saved[site] = live[site].grad.save()
    metric = saved.pop("metric")
    acts = {s: saved[s] for s in sites}
    return (acts, metric, grad_saved) if grads else (acts, metric)


@contextlib.contextmanager
def _frozen(module: torch.nn.Module):
    """Parameters without gradients for the duration (restored after)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def gradients(
    model,
    input_ids: Int[Tensor, "batch pos"],
    sites: list[Site],
    readout: Readout,
    *,
    remote: bool | str = False,
) -> tuple[dict[Site, Tensor], dict[Site, Tensor], Float[Tensor, " batch"]]:
    """Activations, gradients of the summed metric w.r.t. them, and the metric (1 fwd + 1 bwd).

    Distinct sites only: ``resid_pre`` of block l > 0 is the same tensor as ``resid_post`` of
    block l - 1, so ask for one of them. Model parameters get no gradients (frozen for the call;
    on NDIF the server's model is used as it is).
    """
    backend, input_ids = _check(model, input_ids, [], sites)
    remote = resolve_remote(remote, backend)
    sites = sorted(set(sites), key=_order)
    r = readout.rows(input_ids.shape[0])
    hf = hf_model(model)
    if backend == "tl":
        return _tl_gradients(model, hf, input_ids, sites, r)
    ctx = _frozen(hf) if remote is not True else contextlib.nullcontext()
    with ctx, torch.enable_grad():
        acts, metric, grads = _nn_capture(model, input_ids, sites, r, remote, grads=True)
    return acts, {s: grads[s].detach() for s in sites}, metric.detach()


def _tl_gradients(model, hf, input_ids, sites, r):
    live: dict[str, Tensor] = {}
    root_name = hook_name(0, "resid_pre")

    def keeper(name: str):  # bridges call hooks with their canonical names: close over ours
        def keep(x, hook):
            if name == root_name:  # the graph starts here: gradients w.r.t. activations only
                x = x.detach().requires_grad_(True)
            else:
                x.retain_grad()
            live[name] = x
            return x

        return keep

    names = sorted({hook_name(*s) for s in sites} | {root_name})
    with _frozen(hf), torch.enable_grad():
        logits = model.run_with_hooks(input_ids, fwd_hooks=[(n, keeper(n)) for n in names])
        metric = metric_from_logits(logits, r)
        torch.autograd.backward(metric.sum())
    acts = {s: live[hook_name(*s)].detach() for s in sites}
    grads = {s: live[hook_name(*s)].grad.detach() for s in sites}
    return acts, grads, metric.detach()


__all__ = [
    "COMPONENTS",
    "Edit",
    "Readout",
    "capture",
    "check_site",
    "gradients",
    "hook_name",
    "metric_from_logits",
    "run_edited",
]
