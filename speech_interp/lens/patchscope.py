"""The identity patchscope: the model itself decodes a stream's state into the word it holds.

Rule (the identity prompt of nnterp / Patchscopes, Ghandeharioun et al. 2024):

- prompt: :data:`IDENTITY_PROMPT` (``"king king\\n1135 1135\\nhello hello\\n?"``) tokenized by the
  model's tokenizer with no special tokens, then the tokenizer's ``bos_token_id`` prepended if
  it has one (no other special token); its last token, ``"?"``, is the **placeholder** (a prompt
  whose last token does not decode to ``"?"`` is an error);
- patch: for stream ``l < L`` (block ``l``'s input, ``resid_pre``) the source state ``h``
  replaces the placeholder's state at stream ``l`` and the forward runs on from block ``l``;
  the reading is the model's next-token distribution at the placeholder, so ``translate(l, h)``
  returns the placeholder's final residual (before the final norm) of that patched pass and the
  base :class:`~speech_interp.lens.lenses.Lens`'s final norm + unembedding give its logits;
  for ``l = L`` (the last block's output) ``translate`` returns ``h`` itself.

What it reads is the **current word** (the prompt asks the model to repeat what the placeholder
holds), so its quality is its text ceiling (:mod:`speech_interp.lens.ceiling`), not a KL to the
model's output.

Speed: the prefix (every token but the placeholder) does not depend on the patch (a causal LM),
so its keys and values are computed once per model by :meth:`PatchscopeLens.bind`; each
``translate(l, resid)`` with ``resid`` of shape ``(n, d)`` runs only the placeholder position
through blocks ``l..L-1`` (the HF model's own decoder layers and rotary embedding), batched over
the ``n`` sources, attending to a per-call copy of the cached prefix expanded to batch ``n`` (the
stored cache is never written). Llama-shaped architectures (:data:`SUPPORTED`: SmolLM2, the
organism, Qwen2 as SIMS uses it, Helium); any other is an error.

Beside the lens, from :func:`speech_interp.lens.ceiling.word_ranks` (per written word and
stream, a lens's rank of the current, previous and next word's target, and of the current word
from its own input-embedding row): :func:`decoder_floor` (``patchscope_floor``: what the
decoding pass transcribes by itself when given the word's own embedding row at every stream)
and :func:`neighbour_words` (``patchscope_previous_word`` / ``patchscope_next_word``: whether
the pass returns a neighbour instead of the word), rows in lens.csv's columns like
:func:`~speech_interp.lens.ceiling.text_ceiling`'s.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout, submodule
from speech_interp.hooks.paths import get_submodule, module_paths
from speech_interp.lens.ceiling import rate_rows, word_ranks
from speech_interp.lens.lenses import Lens
from speech_interp.lens.unembed import Unembedding, causal_lm

IDENTITY_PROMPT = "king king\n1135 1135\nhello hello\n?"
PLACEHOLDER = "?"
# HF model types whose decoder layers take (hidden, position_embeddings, cache) the Llama way and
# whose decoder model holds the rotary embedding as ``rotary_emb`` (checked in the tests).
SUPPORTED: tuple[str, ...] = ("llama", "qwen2", "helium")
PATCHSCOPE_RULE = (
    "patchscope: the identity prompt 'king king\\n1135 1135\\nhello hello\\n?' (tokenizer's BOS "
    "prepended if it has one, no other special token); the source state replaces the placeholder "
    "'?' at stream l and the forward runs on from block l; the reading is the next-token "
    "distribution at the placeholder. patchscope_floor reads each written word's own "
    "input-embedding row (its last token) patched at every stream; patchscope_previous_word / "
    "patchscope_next_word: the previous / next word's target in the top-k of the written word's "
    "reading; top-k over the text vocabulary, 95% CIs resample word types."
)


def identity_prompt_ids(tokenizer) -> Int[Tensor, " pos"]:
    """The identity prompt's ids (:data:`IDENTITY_PROMPT`, the BOS prepended if the tokenizer has
    one); the last id is the placeholder."""
    ids = list(tokenizer(IDENTITY_PROMPT, add_special_tokens=False).input_ids)
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None:
        ids = [int(bos), *ids]
    last = tokenizer.decode([ids[-1]])
    if last.strip() != PLACEHOLDER:
        raise ValueError(
            f"the identity prompt's last token decodes to {last!r}, not the placeholder "
            f"{PLACEHOLDER!r}, with this tokenizer ({type(tokenizer).__name__})"
        )
    return torch.tensor(ids, dtype=torch.long)


def rotary_embedding(hf) -> torch.nn.Module:
    """The rotary embedding module of a supported HF causal LM: ``rotary_emb`` of the module that
    holds the blocks (where Llama / Qwen2 / Helium compute ``position_embeddings``)."""
    model_type = hf.config.model_type
    owner = module_paths(model_type).blocks.rpartition(".")[0]
    rotary = getattr(get_submodule(hf, owner) if owner else hf, "rotary_emb", None)
    if rotary is None:
        raise ValueError(
            f"{type(hf).__name__} (model_type {model_type!r}) has no rotary embedding "
            f"'rotary_emb' beside its blocks; the patchscope supports {', '.join(SUPPORTED)}"
        )
    return rotary


def _cache_kwargs(hf, blocks) -> tuple[str, ...]:
    """The keyword names the KV cache is passed under: the decoder's own (``cache`` from
    transformers 5.2x, ``past_key_values`` before), and ``layer_past`` when the blocks are
    TransformerLens bridges: TL 4.3's attention bridge reads the cache only as
    ``past_key_values`` or ``layer_past``, and the HF decoder layer hands it on as ``cache``
    (an HF attention ignores ``layer_past``; either way the cache is updated once per layer)."""
    owner = module_paths(hf.config.model_type).blocks.rpartition(".")[0]
    params = inspect.signature(type(get_submodule(hf, owner)).forward).parameters
    names = ("cache",) if "cache" in params else ("past_key_values",)
    if type(blocks[0]).__module__.startswith("transformer_lens.") and "cache" in names:
        names += ("layer_past",)
    return names


def _block_output(out) -> Tensor:
    """Decoder layers return a tensor (transformers 5) or a tuple whose first item is it."""
    return out[0] if isinstance(out, tuple) else out


class PatchscopeLens(Lens):
    """The identity patchscope over the L+1 streams (module docs)."""

    name = "patchscope"
    reads = "current word"

    def __init__(self, model, tokenizer=None, *, batch: int = 256):
        # sources per patched pass: each holds its copy of the prefix's keys and values
        self.batch = int(batch)
        self.tokenizer = tokenizer
        self.bind(model)

    @classmethod
    def for_model(cls, model) -> PatchscopeLens:
        return cls(model)

    def bind(self, model) -> PatchscopeLens:
        """Use ``model``'s blocks, final norm and unembedding; compute the prompt prefix's keys
        and values once."""
        from transformers import DynamicCache

        hf = causal_lm(model)
        model_type = hf.config.model_type
        if model_type not in SUPPORTED:
            raise ValueError(
                f"the patchscope runs Llama-shaped decoder layers ({', '.join(SUPPORTED)}); "
                f"{type(hf).__name__} has model_type {model_type!r}"
            )
        tokenizer = getattr(model, "tokenizer", None)
        tokenizer = self.tokenizer if tokenizer is None else tokenizer
        if tokenizer is None:
            raise ValueError("the patchscope needs the model's tokenizer: pass tokenizer=")
        self.tokenizer = tokenizer
        self.n_layers = int(hf.config.num_hidden_layers)
        self.unembed = Unembedding.from_model(hf)
        self.prompt_ids = identity_prompt_ids(tokenizer)
        self._blocks = submodule(hf, "blocks")
        self._rotary = rotary_embedding(hf)
        self._cache_names = _cache_kwargs(hf, self._blocks)
        param = next(hf.parameters())
        self._device, self._dtype = param.device, param.dtype
        prefix = self.prompt_ids[:-1].to(self._device)[None]
        cache = DynamicCache()
        with torch.no_grad():
            hf(input_ids=prefix, use_cache=True, **dict.fromkeys(self._cache_names, cache))
        # one (keys, values) pair per block, each (1, kv heads, prefix length, head dim)
        self._prefix = [(layer.keys.detach(), layer.values.detach()) for layer in cache.layers]
        lengths = {int(keys.shape[-2]) for keys, _ in self._prefix}
        if len(self._prefix) != self.n_layers or lengths != {prefix.shape[1]}:
            raise RuntimeError(
                f"the prefix pass cached {len(self._prefix)} layers of lengths {sorted(lengths)}; "
                f"expected {self.n_layers} of length {prefix.shape[1]} (the blocks did not fill "
                "the KV cache they were given)"
            )
        self._position = torch.tensor([[prefix.shape[1]]], device=self._device)
        return self

    @property
    def placeholder_position(self) -> int:
        """The placeholder's position in :attr:`prompt_ids` (the last)."""
        return int(self.prompt_ids.numel()) - 1

    def translate(self, layer: int, resid: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        self.check_layer(layer)
        if layer == self.n_layers:
            return resid
        flat = resid.reshape(-1, resid.shape[-1])
        with torch.no_grad():
            parts = [self._patched(layer, chunk) for chunk in flat.split(self.batch)]
        out = torch.cat(parts) if parts else flat.float()
        return out.reshape(resid.shape).to(resid.device)

    def _patched(self, layer: int, h: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
        """The placeholder's final residual with ``h`` at stream ``layer``, for each row."""
        from transformers import DynamicCache

        n = h.shape[0]
        x = h.to(self._device, self._dtype)[:, None, :]
        cache = DynamicCache()
        for i in range(layer, self.n_layers):  # torch.cat in update copies: the prefix stays
            keys, values = self._prefix[i]
            cache.update(keys.expand(n, -1, -1, -1), values.expand(n, -1, -1, -1), i)
        position_embeddings = self._rotary(x, position_ids=self._position)
        for i in range(layer, self.n_layers):
            x = _block_output(self._blocks[i](
                x, attention_mask=None, position_ids=self._position,
                position_embeddings=position_embeddings, use_cache=True,
                **dict.fromkeys(self._cache_names, cache),
            ))  # fmt: skip
        return x[:, 0].float()


# --- reading written words -----------------------------------------------------------------


def decoder_floor(
    model,
    layout: TokenLayout,
    lens: Lens,
    utterances: Sequence[Utterance],
    *,
    ks: Sequence[int] = (1, 5),
    model_id: str = "",
    backend: str = "",
    seed: int = 0,
    n_boot: int = 2000,
    chunk_size: int = 8192,
) -> pd.DataFrame:
    """``patchscope_floor`` rows (lens.csv's columns): per stream ``l``, the share of written
    words whose target is in the top-``k`` of ``lens`` reading the word's own input-embedding row
    (the stream-0 state of its last token) patched in at stream ``l``: what the decoding pass
    transcribes by itself, for comparison with the text ceiling at the same stream."""
    ranks = word_ranks(model, layout, lens, utterances, reads=("floor",), chunk_size=chunk_size)
    return rate_rows(ranks, {"patchscope_floor": "rank_floor"}, ks=ks, lens=lens.name,
                     model_id=model_id, backend=backend, seed=seed, n_boot=n_boot)  # fmt: skip


def neighbour_words(
    model,
    layout: TokenLayout,
    lens: Lens,
    utterances: Sequence[Utterance],
    *,
    ks: Sequence[int] = (1, 5),
    model_id: str = "",
    backend: str = "",
    seed: int = 0,
    n_boot: int = 2000,
    chunk_size: int = 8192,
) -> pd.DataFrame:
    """``patchscope_previous_word`` / ``patchscope_next_word`` rows (lens.csv's columns): per
    stream, the share of written words (read at their last token, as the text ceiling reads
    them) whose reading has the previous / next word's target in its top-``k`` (words without
    such a neighbour left out): which word the pass returns, beside the ceiling's current word."""
    ranks = word_ranks(model, layout, lens, utterances, reads=("previous", "next"),
                       chunk_size=chunk_size)  # fmt: skip
    metrics = {"patchscope_previous_word": "rank_previous", "patchscope_next_word": "rank_next"}
    return rate_rows(ranks, metrics, ks=ks, lens=lens.name, model_id=model_id, backend=backend,
                     seed=seed, n_boot=n_boot)  # fmt: skip


__all__ = [
    "IDENTITY_PROMPT",
    "PATCHSCOPE_RULE",
    "PLACEHOLDER",
    "SUPPORTED",
    "PatchscopeLens",
    "decoder_floor",
    "identity_prompt_ids",
    "neighbour_words",
    "rotary_embedding",
]
