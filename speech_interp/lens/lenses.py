"""The lens interface over the L+1 residual streams, and the logit lens.

A lens ``translate``s stream ``l`` (identity for the logit lens, ``h + A h + b`` for the tuned
lens, :mod:`speech_interp.lens.tuned`), then the model's own final norm and unembedding apply
(:class:`Unembedding`, float32, on the client); :mod:`speech_interp.lens.registry` names them.
Stream ``l < L`` is block l's input, stream ``L`` the last block's output before the final norm
(:func:`speech_interp.residual_stack`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from speech_interp.data.prompt import Prompt
from speech_interp.hooks import TokenLayout
from speech_interp.lens.unembed import Scores, Unembedding, causal_lm, score_hidden


class Lens:
    """A lens: ``translate`` a stream, then the model's final norm and unembedding."""

    name: str = "lens"
    n_layers: int
    unembed: Unembedding | None = None
    needs_path: ClassVar[bool] = False  # whether :meth:`build` needs a lens directory (``path``)
    accepts_path: ClassVar[bool] = False  # whether :meth:`build` reads or writes one (``path``)
    # what the lens reads: "next token" (its kl_to_final to the model's output is its quality) or
    # "current word" (its quality is its text ceiling, speech_interp.lens.ceiling)
    reads: ClassVar[str] = "next token"

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer <= self.n_layers:
            raise ValueError(
                f"layer {layer} out of range: this lens has streams 0..{self.n_layers} "
                f"(the {self.n_layers + 1} residual streams of a {self.n_layers}-layer model)"
            )

    @classmethod
    def for_model(cls, model) -> Lens:
        """The lens for ``model`` when named by string (:func:`~speech_interp.lens.as_lens`)."""
        raise NotImplementedError

    @classmethod
    def build(cls, model, layout: TokenLayout, **options) -> tuple[Lens, str | None]:
        """(the lens for ``model``, a note for run.json or None), as a command builds it
        (:func:`~speech_interp.lens.registry.build_lens`); by default :meth:`for_model`."""
        return cls.for_model(model), None

    def bind(self, model) -> Lens:
        """Use ``model``'s final norm and unembedding; returns the lens."""
        raise NotImplementedError

    def translate(self, layer: int, resid: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        raise NotImplementedError

    def text_direction(self, layer: int, token_id: int) -> Float[Tensor, " d"] | None:
        """The unit residual direction along which this lens reads ``token_id`` at stream
        ``layer``, for the causal tests to ablate; None: the logit lens's ``W_U[t] * g`` (the
        default of :mod:`speech_interp.causal.ablation`)."""
        return None

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


def save_lens_dir(path, state: dict[str, Tensor], config: dict) -> Path:
    """A lens directory as tuned-lens lays it out: ``params.pt`` (``state``) and
    ``config.json``, each written atomically."""
    import json

    from speech_interp.artifacts import atomic_path, write_text

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / "params.pt") as tmp:
        torch.save(state, tmp)
    write_text(path / "config.json", json.dumps(config, indent=2))
    return path


def read_lens_dir(path, what: str) -> tuple[dict, dict[str, Tensor]]:
    """(config, state) of a lens directory written by :func:`save_lens_dir` (``what`` names
    the lens in the error when a file is missing)."""
    import json

    path = Path(path)
    for name in ("config.json", "params.pt"):
        if not (path / name).exists():
            raise FileNotFoundError(f"{what} lens directory {path} has no {name}")
    config = json.loads((path / "config.json").read_text())
    return config, torch.load(path / "params.pt", map_location="cpu", weights_only=True)


def prompt_ids(prompt) -> Int[Tensor, " pos"]:
    """A prompt's input ids as a checked 1-d long tensor."""
    ids = prompt.input_ids if isinstance(prompt, Prompt) else torch.as_tensor(prompt)
    if ids.ndim != 1 or ids.numel() == 0:
        raise ValueError(f"a prompt must be a non-empty 1-d id sequence, got {tuple(ids.shape)}")
    return ids.long()


__all__ = ["Lens", "LogitLens", "prompt_ids", "read_lens_dir", "save_lens_dir"]
