"""The tuned lens: per-layer affine translators fit to the model's own output (tuned-lens format).

Saved and loaded in tuned-lens 0.2's layout (``params.pt`` + ``config.json``), so lenses move
between this package and tuned-lens.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.core.residuals import residual_stack
from speech_interp.data.prompt import Prompt
from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.lens.lenses import Lens, prompt_ids, read_lens_dir, save_lens_dir
from speech_interp.lens.unembed import Unembedding, causal_lm


class TunedLens(torch.nn.Module, Lens):
    """Per-layer affine translators ``h + A h + b`` (tuned-lens's residual form), A=0, b=0 at init.

    Stream ``l < L`` has translator ``l``; the last stream is the model's own final input and gets
    none. Trained by :meth:`fit` to minimise KL(final distribution || lens distribution) on the
    model's own prompts. :meth:`save` writes tuned-lens's layout: ``params.pt`` (the translators'
    state dict, keys ``{l}.weight`` / ``{l}.bias``) and ``config.json``.
    """

    name = "tuned"
    needs_path = True
    accepts_path = True

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
    def build(
        cls,
        model,
        layout: TokenLayout,
        *,
        path: str | Path | None = None,
        utterances: Sequence[Utterance] = (),
        seed: int = 0,
        steps: int = 500,
        **_,
    ) -> tuple[TunedLens, str]:
        """The lens saved in ``path``, or one fit on ``utterances``' prompts (``steps``, ``seed``)
        and saved there when ``path`` holds no ``params.pt``; with a note saying which."""
        if path is None:
            raise ValueError("a tuned lens is built from a directory: pass path=")
        path = Path(path)
        if (path / "params.pt").exists():
            return cls.load(path, model=model), "loaded"
        prompts = [u.to_prompt(layout, model.tokenizer) for u in utterances]
        lens = cls.from_model(model)
        lens.fit(model, prompts, steps=steps, seed=seed)
        lens.save(path)
        return lens, f"fit on the data's {len(prompts)} prompts ({steps} steps) and saved"

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
        ids = [prompt_ids(p) for p in prompts]
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
        state = {k: v.detach().cpu() for k, v in self.layer_translators.state_dict().items()}
        for i in range(self.n_layers):
            state.setdefault(f"{i}.bias", torch.zeros(self.d_model))
        config = dict(self.config, bias=True)
        if self.unembed is not None:
            config["unembed_hash"] = unembed_hash(self.unembed.weight)
        return save_lens_dir(path, state, config)

    @classmethod
    def load(cls, path: str | Path, model=None) -> TunedLens:
        """Read a lens saved by :meth:`save` (or by tuned-lens); bind it when ``model`` is given."""
        config, state = read_lens_dir(path, "tuned")
        if config.get("lens_type", "linear_tuned_lens") != "linear_tuned_lens":
            raise ValueError(f"{path}: unsupported lens_type {config['lens_type']!r}")
        lens = cls(
            config["d_model"],
            config["num_hidden_layers"],
            bias=config.get("bias", True),
            base_model=config.get("base_model_name_or_path", ""),
        )
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


__all__ = ["TunedLens", "unembed_hash"]
