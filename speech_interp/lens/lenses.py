"""Lenses over the L+1 residual streams: the logit lens and a tuned lens (tuned-lens format).

A lens ``translate``s stream ``l`` (identity for the logit lens, ``h + A h + b`` for the tuned
lens), then the model's own final norm and unembedding apply (:class:`Unembedding`, float32,
on the client). Stream ``l < L`` is block l's input, stream ``L`` the last block's output before
the final norm (:func:`speech_interp.residual_stack`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import einops
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.core.residuals import residual_stack
from speech_interp.data.prompt import Prompt
from speech_interp.hooks import TokenLayout
from speech_interp.lens.unembed import Scores, Unembedding, causal_lm, score_hidden


class Lens:
    """A lens: ``translate`` a stream, then the model's final norm and unembedding."""

    name: str = "lens"
    n_layers: int
    unembed: Unembedding | None = None

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer <= self.n_layers:
            raise ValueError(
                f"layer {layer} out of range: this lens has streams 0..{self.n_layers} "
                f"(the {self.n_layers + 1} residual streams of a {self.n_layers}-layer model)"
            )

    @classmethod
    def for_model(cls, model) -> Lens:
        """The lens for ``model`` when named by string (:func:`as_lens`)."""
        raise NotImplementedError

    def bind(self, model) -> Lens:
        """Use ``model``'s final norm and unembedding; returns the lens."""
        raise NotImplementedError

    def translate(self, layer: int, resid: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        raise NotImplementedError

    def _unembed(self) -> Unembedding:
        if self.unembed is None:
            raise ValueError(f"the {self.name} lens is not bound to a model; call bind(model)")
        return self.unembed

    def hidden(self, layer: int, resid: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        """Final-norm output for stream ``layer`` (what the unembedding reads)."""
        self.check_layer(layer)
        return self._unembed().normed(self.translate(layer, resid.float()))

    def logits_at(self, layer: int, resid: Float[Tensor, "... d"]) -> Float[Tensor, "... vocab"]:
        """Full-vocabulary lens logits; for small inputs (scoring uses :meth:`score`)."""
        return self._unembed().logits(self.hidden(layer, resid))

    def score(
        self,
        layer: int,
        resid: Float[Tensor, "pos d"],
        query_pos: Int[Tensor, " q"],
        query_tok: Int[Tensor, " q"],
        layout: TokenLayout,
        chunk_size: int = 8192,
        **pooled,
    ) -> Scores:
        """Memory-bounded scores of stream ``layer`` at ``resid``'s rows (:func:`score_hidden`;
        ``pooled``: its max-pooled query arguments)."""
        return score_hidden(
            self.hidden(layer, resid), self._unembed(), query_pos, query_tok, layout, chunk_size,
            **pooled,
        )  # fmt: skip

    def score_streams(
        self,
        resid: Float[Tensor, "stream pos d"],
        query_pos: Int[Tensor, " q"],
        query_tok: Int[Tensor, " q"],
        layout: TokenLayout,
        chunk_size: int = 8192,
        *,
        pool_of_pos: Int[Tensor, " pos"] | None = None,
        pool_query: Int[Tensor, " pq"] | None = None,
        pool_tok: Int[Tensor, " pq"] | None = None,
    ) -> list[Scores]:
        """:meth:`score` of every stream (``resid[l]`` is stream ``l``) in one vocabulary pass.

        Each stream's rows are compared with the last stream's at the same position
        (``Scores.kl_to_ref``: KL(final distribution || lens distribution), the tuned-lens
        paper's lens quality measure, and ``top_full_id``). The streams are stacked and scored
        together with ``chunk_size // n_streams`` vocabulary
        rows per chunk, so memory stays O(pos x chunk_size), as for one stream. Max-pooled
        queries (:func:`score_hidden`) pool within each stream.
        """
        n_streams, n_pos = resid.shape[0], resid.shape[1]
        if n_streams != self.n_layers + 1:
            raise ValueError(
                f"got {n_streams} streams; this lens has {self.n_layers + 1} "
                f"(streams 0..{self.n_layers})"
            )
        hidden = torch.cat([self.hidden(layer, resid[layer]) for layer in range(n_streams)])
        offsets = torch.arange(n_streams, device=query_pos.device) * n_pos
        stacked_pos = einops.rearrange(offsets[:, None] + query_pos[None], "s q -> (s q)")
        stacked_tok = einops.repeat(query_tok, "q -> (s q)", s=n_streams)
        chunk = max(1, chunk_size // n_streams)
        pooled = {}
        if pool_tok is not None and pool_tok.numel():
            n_pools = int(pool_of_pos.max()) + 1
            shift = torch.arange(n_streams, device=pool_of_pos.device)[:, None] * n_pools
            stacked_pools = torch.where(pool_of_pos[None] >= 0, pool_of_pos[None] + shift, -1)
            pooled = dict(
                pool_of_pos=einops.rearrange(stacked_pools, "s p -> (s p)"),
                pool_query=einops.rearrange(pool_query[None] + shift, "s q -> (s q)"),
                pool_tok=einops.repeat(pool_tok, "q -> (s q)", s=n_streams),
            )
        final_rows = (n_streams - 1) * n_pos + torch.arange(n_pos, device=hidden.device)
        scores = score_hidden(
            hidden, self._unembed(), stacked_pos, stacked_tok, layout, chunk, **pooled,
            reference_rows=einops.repeat(final_rows, "p -> (s p)", s=n_streams),
        )  # fmt: skip
        return scores.split(n_streams)


class LogitLens(Lens):
    """The logit lens: the model's final norm and unembedding applied to each stream."""

    name = "logit"

    def __init__(self, model):
        self.bind(model)

    @classmethod
    def for_model(cls, model) -> LogitLens:
        return cls(model)

    def bind(self, model) -> LogitLens:
        """Use ``model``'s final norm and unembedding."""
        hf = causal_lm(model)
        self.n_layers = int(hf.config.num_hidden_layers)
        self.unembed = Unembedding.from_model(hf)
        return self

    def translate(self, layer: int, resid: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        return resid


class TunedLens(torch.nn.Module, Lens):
    """Per-layer affine translators ``h + A h + b`` (tuned-lens's residual form), A=0, b=0 at init.

    Stream ``l < L`` has translator ``l``; the last stream is the model's own final input and gets
    none. Trained by :meth:`fit` to minimise KL(final distribution || lens distribution) on the
    model's own prompts. :meth:`save` writes tuned-lens's layout: ``params.pt`` (the translators'
    state dict, keys ``{l}.weight`` / ``{l}.bias``) and ``config.json``.
    """

    name = "tuned"

    def __init__(
        self, d_model: int, num_hidden_layers: int, *, bias: bool = True, base_model: str = ""
    ):
        torch.nn.Module.__init__(self)
        self.n_layers = int(num_hidden_layers)
        self.d_model = int(d_model)
        self.config = {
            "base_model_name_or_path": base_model,
            "d_model": self.d_model,
            "num_hidden_layers": self.n_layers,
            "bias": bias,
            "base_model_revision": None,
            "unembed_hash": None,
            "lens_type": "linear_tuned_lens",
        }
        self.layer_translators = torch.nn.ModuleList()
        for _ in range(self.n_layers):
            linear = torch.nn.Linear(self.d_model, self.d_model, bias=bias)
            torch.nn.init.zeros_(linear.weight)
            if bias:
                torch.nn.init.zeros_(linear.bias)
            self.layer_translators.append(linear)
        self.unembed = None

    @classmethod
    def for_model(cls, model) -> TunedLens:
        raise ValueError("lens='tuned' needs a TunedLens object (TunedLens.load(dir) or .fit())")

    @classmethod
    def from_model(cls, model, *, bias: bool = True) -> TunedLens:
        """An identity-initialised lens sized for ``model`` and bound to it."""
        hf = causal_lm(model)
        cfg = hf.config
        lens = cls(cfg.hidden_size, cfg.num_hidden_layers, bias=bias, base_model=cfg.name_or_path)
        return lens.bind(model)

    def bind(self, model) -> TunedLens:
        """Use ``model``'s final norm and unembedding; its sizes must match the lens."""
        hf = causal_lm(model)
        d, L = int(hf.config.hidden_size), int(hf.config.num_hidden_layers)
        if (d, L) != (self.d_model, self.n_layers):
            raise ValueError(
                f"tuned lens is for d_model={self.d_model}, {self.n_layers} layers; the model "
                f"has d_model={d}, {L} layers"
            )
        self.unembed = Unembedding.from_model(hf)
        self.to(hf.get_input_embeddings().weight.device)
        return self

    def translate(self, layer: int, resid: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        self.check_layer(layer)
        if layer == self.n_layers:
            return resid
        return resid + self.layer_translators[layer](resid)

    def fit(
        self,
        model,
        prompts: Sequence[Prompt | Tensor | Sequence[int]],
        *,
        steps: int = 500,
        lr: float = 1e-3,
        seed: int = 0,
        progress: bool = True,
        remote: bool | str = False,
        max_positions: int = 512,
        dtype: torch.dtype = torch.float32,
    ) -> list[float]:
        """Train on ``prompts`` (one prompt per step, seeded order); returns the mean KL per step.

        KL(final || lens) over the full vocabulary, one layer at a time (positions x vocab per
        layer; at most ``max_positions`` positions per step, a seeded random subset).
        ``dtype=torch.bfloat16`` runs the lens's matmuls under bfloat16 autocast (for GPUs; the
        target distribution and the softmax stay float32). On CPU with the pinned torch 2.11 it
        is much slower than float32 (a bf16 ``grad @ W`` of SmolLM2's unembedding: 4.1 s vs
        0.04 s), so float32 is the default.
        """
        self.bind(model)
        ids = [_as_ids(p) for p in prompts]
        if not ids:
            raise ValueError("tuned lens fit needs at least one prompt")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        gen = torch.Generator().manual_seed(seed)
        low = dtype != torch.float32
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        cache: dict[int, Tensor] = {}
        order: list[int] = []
        losses: list[float] = []
        for _ in tqdm(range(steps), desc="tuned lens fit", disable=not progress):
            if not order:
                order = torch.randperm(len(ids), generator=gen).tolist()
            i = order.pop()
            if i not in cache:
                cache[i] = residual_stack(model, ids[i][None], remote=remote)[:, 0].float()
            stack = cache[i]
            if stack.shape[1] > max_positions:
                keep = torch.randperm(stack.shape[1], generator=gen)[:max_positions]
                stack = stack[:, keep.to(stack.device)]
            with torch.no_grad():
                final = F.log_softmax(self.logits_at(self.n_layers, stack[-1]), dim=-1)
            opt.zero_grad()
            total = 0.0
            for layer in range(self.n_layers):
                with torch.autocast(stack.device.type, dtype=dtype, enabled=low):
                    logits = self.logits_at(layer, stack[layer])
                logp = F.log_softmax(logits.float(), dim=-1)
                kl = F.kl_div(logp, final, log_target=True, reduction="batchmean")
                kl.backward()
                total += float(kl.detach())
            opt.step()
            losses.append(total / max(self.n_layers, 1))
        return losses

    def save(self, path: str | Path) -> Path:
        """Write ``params.pt`` and ``config.json`` (tuned-lens's layout) into ``path``.

        Loadable by tuned-lens 0.2: ``unembed_hash`` is written as it computes it
        (:func:`unembed_hash`) when the lens is bound to a model, and every translator gets a
        bias (zeros for a lens without one; outputs unchanged), since tuned-lens always builds
        and zeroes the bias.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.layer_translators.state_dict().items()}
        for i in range(self.n_layers):
            state.setdefault(f"{i}.bias", torch.zeros(self.d_model))
        config = dict(self.config, bias=True)
        if self.unembed is not None:
            config["unembed_hash"] = unembed_hash(self.unembed.weight)
        from speech_interp.artifacts import atomic_path, write_text

        with atomic_path(path / "params.pt") as tmp:
            torch.save(state, tmp)
        write_text(path / "config.json", json.dumps(config, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, model=None) -> TunedLens:
        """Read a lens saved by :meth:`save` (or by tuned-lens); bind it when ``model`` is given."""
        path = Path(path)
        for name in ("config.json", "params.pt"):
            if not (path / name).exists():
                raise FileNotFoundError(f"tuned lens directory {path} has no {name}")
        config = json.loads((path / "config.json").read_text())
        if config.get("lens_type", "linear_tuned_lens") != "linear_tuned_lens":
            raise ValueError(f"{path}: unsupported lens_type {config['lens_type']!r}")
        lens = cls(
            config["d_model"],
            config["num_hidden_layers"],
            bias=config.get("bias", True),
            base_model=config.get("base_model_name_or_path", ""),
        )
        state = torch.load(path / "params.pt", map_location="cpu", weights_only=True)
        try:
            lens.layer_translators.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{path}/params.pt does not fit config.json: {err}") from None
        if model is None:
            return lens
        lens.bind(model)
        expected = config.get("unembed_hash")
        if expected and expected != unembed_hash(lens.unembed.weight):
            warnings.warn(
                f"{path}: the model's unembedding differs from the one this lens was tuned for "
                "(unembed_hash mismatch); the lens may not fit this model",
                stacklevel=2,
            )
        return lens


def unembed_hash(weight: Tensor) -> str:
    """tuned-lens's fingerprint of an unembedding matrix (``Unembed.unembedding_hash`` in
    tuned-lens 0.2): sha256 of numpy's one-decimal string form of the float32 matrix."""
    import hashlib

    import numpy as np

    text = np.array_str(weight.detach().cpu().float().numpy(), precision=1)
    return hashlib.sha256(text.encode()).hexdigest()


def _as_ids(prompt) -> Int[Tensor, " pos"]:
    ids = prompt.input_ids if isinstance(prompt, Prompt) else torch.as_tensor(prompt)
    if ids.ndim != 1 or ids.numel() == 0:
        raise ValueError(f"a prompt must be a non-empty 1-d id sequence, got {tuple(ids.shape)}")
    return ids.long()


# The one registry of lenses: name -> class. The Python API (``lens="logit"``) and the CLI's
# ``--lens`` both read it; a new lens is a Lens subclass added here.
LENSES: dict[str, type[Lens]] = {"logit": LogitLens, "tuned": TunedLens}


def as_lens(lens: str | Lens, model) -> Lens:
    """A registered lens name -> that lens for ``model``; a lens object is bound to ``model``."""
    if isinstance(lens, Lens):
        return lens.bind(model)
    if lens not in LENSES:
        raise ValueError(f"lens must be one of {', '.join(LENSES)} or a Lens object, got {lens!r}")
    return LENSES[lens].for_model(model)


def kl_to_final(
    lens: Lens, model, prompts: Sequence[Prompt | Tensor], *, remote: bool | str = False
) -> pd.DataFrame:
    """Mean KL(final distribution || lens distribution) per stream over all prompt positions."""
    lens = as_lens(lens, model)
    total = torch.zeros(lens.n_layers + 1, dtype=torch.float64)
    n = 0
    with torch.no_grad():
        for p in prompts:
            stack = residual_stack(model, _as_ids(p)[None], remote=remote)[:, 0]
            final = F.log_softmax(lens.logits_at(lens.n_layers, stack[-1]), dim=-1)
            for layer in range(lens.n_layers + 1):
                logp = F.log_softmax(lens.logits_at(layer, stack[layer]), dim=-1)
                total[layer] += F.kl_div(logp, final, log_target=True, reduction="sum").double()
            n += stack.shape[1]
    if n == 0:
        raise ValueError("kl_to_final needs at least one prompt")
    return pd.DataFrame({"layer": range(lens.n_layers + 1), "kl": (total / n).numpy(), "n": n})


__all__ = ["LENSES", "Lens", "LogitLens", "TunedLens", "as_lens", "kl_to_final", "unembed_hash"]
