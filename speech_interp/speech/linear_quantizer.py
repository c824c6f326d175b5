"""SpiritLM's HuBERT unit classifier: an MLP over mHuBERT features with a CTC blank output.

Facts (facebookresearch/spiritlm at 52fb2f4, ``spiritlm/speech_tokenizer/hubert/``; no code
copied): ``spiritlm_hubert()`` runs mHuBERT-base-25Hz layer 11 through a *linear quantizer*
loaded from ``L11_quantizer_500.pt``, a torch-saved dict with ``model_cfg`` (``vocab_size``,
``dim``, ``upstream_dim``) and ``model_weight``, the state dict of three linear layers with
LeakyReLU between them: ``dim -> dim - m//4 -> dim - m//2 -> vocab_size + 1`` where
``m = upstream_dim - (vocab_size + 1)`` (keys ``0.*``, ``2.*``, ``4.*``). The extra output is the
blank. A frame's unit is the argmax; a blank frame takes the unit of the frame before it (rolled
over the flattened sequence, repeatedly, so runs of blanks fill from their left and a blank first
frame takes the last frame's unit). No deduplication here (SpiritLM's ``units_to_string`` does it).
SpiritLM gives up after 10,000 rounds and would emit the blank id as a unit (``[Hu500]``); here a
sequence that is blank everywhere is an error instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor


class LinearQuantizer(torch.nn.Module):
    """Frame features -> unit ids, by SpiritLM's rule (module docstring)."""

    def __init__(self, dim: int, upstream_dim: int, vocab_size: int):
        super().__init__()
        out = vocab_size + 1
        mid = upstream_dim - out
        if mid < 0 or dim - mid // 2 < 1:
            raise ValueError(
                f"quantizer sizes do not make layers: dim={dim}, upstream_dim={upstream_dim}, "
                f"vocab_size={vocab_size}"
            )
        self.vocab_size = int(vocab_size)
        self.encoder = torch.nn.Sequential(
            torch.nn.Linear(dim, dim - mid // 4),
            torch.nn.LeakyReLU(),
            torch.nn.Linear(dim - mid // 4, dim - mid // 2),
            torch.nn.LeakyReLU(),
            torch.nn.Linear(dim - mid // 2, out),
        )

    @property
    def blank(self) -> int:
        return self.vocab_size

    @classmethod
    def load(cls, path: str | Path) -> LinearQuantizer:
        """Read a SpiritLM quantizer checkpoint (``L11_quantizer_500.pt``)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"linear quantizer checkpoint not found: {path} (SpiritLM ships it as "
                "checkpoints/speech_tokenizer/hubert_25hz/L11_quantizer_500.pt)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"model_cfg", "model_weight"} <= set(state):
            raise ValueError(f"{path}: expected a dict with 'model_cfg' and 'model_weight'")
        cfg = state["model_cfg"]
        quantizer = cls(int(cfg["dim"]), int(cfg["upstream_dim"]), int(cfg["vocab_size"]))
        try:
            quantizer.encoder.load_state_dict(state["model_weight"])
        except RuntimeError as err:
            raise ValueError(f"{path}: model_weight does not fit model_cfg ({err})") from None
        return quantizer.eval()

    def units_from_logits(self, logits: Float[Tensor, "frames outputs"]) -> Int[Tensor, " frames"]:
        """Argmax per frame, then every blank filled from the frame before it."""
        codes = logits.log_softmax(-1).argmax(-1)
        blank = codes == self.blank
        if blank.all():
            raise ValueError("every frame was classified blank: no unit to fill them with")
        while blank.any():
            codes = torch.where(blank, torch.roll(codes, 1), codes)
            blank = codes == self.blank
        return codes

    @torch.no_grad()
    def forward(self, features: Float[Tensor, "frames dim"]) -> Int[Tensor, " frames"]:
        return self.units_from_logits(self.encoder(features.float()))


__all__ = ["LinearQuantizer"]
