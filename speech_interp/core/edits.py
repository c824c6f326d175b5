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
The model computes its logits at the readout's positions only (HF ``logits_to_keep`` with the
positions, :func:`kept_logits`): at a 150k-token vocabulary the unembedding of every position
would cost more than the transformer itself.

The site accessor, the edit rule and the readout are written once, in
:mod:`speech_interp.core.trace_ops`, and serve both backends; inside nnsight traces they are the
only code of this package, shipped by value to NDIF (``remote=True``) and to nnsight's local
simulation of it (``remote="local"``).
"""

from __future__ import annotations

import contextlib
import inspect
from collections import defaultdict
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from speech_interp.core.remote import resolve_remote
from speech_interp.core.residuals import n_layers
from speech_interp.core.trace_ops import apply_edit, log_prob_readout, site_value
from speech_interp.hooks import module_paths, submodule
from speech_interp.models import backend_of, hf_model

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


def stream_site(stream: int, n_layers: int) -> Site:
    """The site of a residual stream in the lens numbering (:mod:`speech_interp.core.runs`)."""
    return (stream, "resid_pre") if stream < n_layers else (n_layers - 1, "resid_post")


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
    return log_prob_readout(logits, r.positions, r.targets, r.weights)


def merge_edits(edits: list[Edit]) -> dict[Site, tuple[Tensor, ...]]:
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


def apply_to_copy(x: Tensor, edit: tuple[Tensor, ...]) -> Tensor:
    """A copy of ``x`` with a merged edit (rows, positions, keep, u, v) applied (TL hooks)."""
    x = x.clone()
    apply_edit(x, *edit)
    return x


def kept_logits(model, readout: Readout) -> tuple[dict, Readout]:
    """Forward kwargs that compute the model's logits at the readout's positions only, and the
    readout re-indexed into those logits (no kwargs, same readout, for a model that cannot)."""
    if "logits_to_keep" not in inspect.signature(hf_model(model).forward).parameters:
        return {}, readout
    keep = torch.unique(readout.positions)  # sorted
    positions = torch.searchsorted(keep, readout.positions)
    return {"logits_to_keep": keep}, Readout(positions, readout.targets, readout.weights)


def _prepare(model, input_ids, readout: Readout, remote, edits=(), sites=()):
    """Checked (backend, remote, readout rows re-indexed into the kept logits, distinct sites in
    forward order, forward kwargs) of one pass."""
    backend = backend_of(model)
    for layer, comp in [(e.layer, e.component) for e in edits] + list(sites):
        check_site(model, layer, comp)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, pos], got shape {tuple(input_ids.shape)}")
    rows = readout.rows(input_ids.shape[0])
    if rows.positions.numel() and (
        rows.positions.min() < 0 or rows.positions.max() >= input_ids.shape[1]
    ):
        raise ValueError(f"readout positions must lie in 0..{input_ids.shape[1] - 1}")
    kwargs, rows = kept_logits(model, rows)
    sites = sorted(set(sites), key=_order)
    return backend, resolve_remote(remote, backend), rows, sites, kwargs


def run_edited(
    model,
    input_ids: Int[Tensor, "batch pos"],
    edits: list[Edit],
    readout: Readout,
    *,
    remote: bool | str = False,
    prefix_cache=None,
    skip_blocks: dict[int, Tensor] | None = None,
) -> Float[Tensor, " batch"]:
    """One forward pass with ``edits`` applied; the readout metric of every row.

    ``prefix_cache``: an HF cache of the tokens *before* ``input_ids`` (batch-expanded), so only
    the suffix is computed; edit and readout positions count from the suffix's start.
    ``skip_blocks``: block index -> the output that block would give (``[batch, pos, d]``); those
    blocks are not run (nnsight's ``skip``), so edits must lie above them. Both local nnsight
    only: TransformerLens's bridge does not fill HF caches.
    """
    backend, remote, r, _, kw = _prepare(model, input_ids, readout, remote, edits=edits)
    skip_blocks = skip_blocks or {}
    if prefix_cache is not None or skip_blocks:
        if backend != "nnsight" or remote:
            raise ValueError("prefix_cache and skip_blocks run on a local nnsight model only")
    if skip_blocks and min((e.layer for e in edits), default=n_layers(model)) <= max(skip_blocks):
        raise ValueError("an edit lies in or below a skipped block")
    if prefix_cache is not None:
        params = inspect.signature(hf_model(model).forward).parameters
        kw = {**kw, ("cache" if "cache" in params else "past_key_values"): prefix_cache}
    merged = merge_edits(edits)
    if backend == "tl":
        hooks = [(hook_name(*site), _tl_hook(e)) for site, e in merged.items()]
        with torch.no_grad():
            logits = model.run_with_hooks(input_ids, fwd_hooks=hooks, **kw)
        return metric_from_logits(logits, r).detach().cpu()
    with torch.no_grad():
        return _nn_edited(model, input_ids, merged, r, remote, kw, skip_blocks).detach().cpu()


def _tl_hook(edit):
    def hook(x, hook):
        return apply_to_copy(x, edit)

    return hook


def _trace_parts(model):
    """(blocks envoy, attention name, MLP name) of an nnsight model, for the trace code."""
    paths = module_paths(model.config.model_type)
    return submodule(model, "blocks"), paths.attn, paths.mlp


def _nn_edited(model, input_ids, merged, r, remote, kw, skip_blocks=None) -> Tensor:
    blocks, attn, mlp = _trace_parts(model)
    r_pos, r_tgt, r_w = r.positions, r.targets, r.weights
    out = {}
    with model.trace(input_ids, remote=remote, **kw):
        for layer, value in sorted((skip_blocks or {}).items()):
            blocks[layer].skip(value)
        for (layer, comp), edit in merged.items():
            apply_edit(site_value(blocks[layer], comp, attn, mlp), *edit)
        out["metric"] = log_prob_readout(model.output.logits, r_pos, r_tgt, r_w).save()
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
    backend, remote, r, sites, kw = _prepare(model, input_ids, readout, remote, sites=sites)
    if backend == "tl":
        names = {hook_name(*s) for s in sites}
        with torch.no_grad():
            logits, cache = model.run_with_cache(input_ids, names_filter=lambda n: n in names, **kw)
        acts = {s: cache[hook_name(*s)].detach() for s in sites}
        return acts, metric_from_logits(logits, r).detach().cpu()
    with torch.no_grad():
        acts, metric = _nn_capture(model, input_ids, sites, r, remote, kw, grads=False)
    return acts, metric


def _nn_capture(model, input_ids, sites, r, remote, kw, grads: bool):
    blocks, attn, mlp = _trace_parts(model)
    r_pos, r_tgt, r_w = r.positions, r.targets, r.weights
    saved: dict = {}
    grad_saved: dict = {}
    with model.trace(input_ids, remote=remote, **kw):
        live = {}
        if grads:
            blocks[0].input.requires_grad_(True)
        for layer, comp in sites:
            x = site_value(blocks[layer], comp, attn, mlp)
            live[(layer, comp)] = x
            saved[(layer, comp)] = x.detach().save()
        metric = log_prob_readout(model.output.logits, r_pos, r_tgt, r_w)
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
    backend, remote, r, sites, kw = _prepare(model, input_ids, readout, remote, sites=sites)
    hf = hf_model(model)
    if backend == "tl":
        return _tl_gradients(model, hf, input_ids, sites, r, kw)
    ctx = _frozen(hf) if remote is not True else contextlib.nullcontext()
    with ctx, torch.enable_grad():
        acts, metric, grads = _nn_capture(model, input_ids, sites, r, remote, kw, grads=True)
    return acts, {s: grads[s].detach() for s in sites}, metric.detach()


def _tl_gradients(model, hf, input_ids, sites, r, kw):
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
        hooks = [(n, keeper(n)) for n in names]
        logits = model.run_with_hooks(input_ids, fwd_hooks=hooks, **kw)
        metric = metric_from_logits(logits, r)
        torch.autograd.backward(metric.sum())
    acts = {s: live[hook_name(*s)].detach() for s in sites}
    grads = {s: live[hook_name(*s)].grad.detach() for s in sites}
    return acts, grads, metric.detach()


__all__ = [
    "COMPONENTS",
    "Edit",
    "apply_to_copy",
    "Readout",
    "capture",
    "check_site",
    "gradients",
    "hook_name",
    "kept_logits",
    "metric_from_logits",
    "merge_edits",
    "run_edited",
    "stream_site",
]
