"""Checkpoints published in formats other than a plain HF causal-LM directory, read as one.

**slamkit UnitLM** (SIMS; the format's facts and sources are in :mod:`speech_interp.hooks.sims`):
recognised by ``model_type == "speech_language_model"`` (or ``architectures`` naming
``UnitLM``) in ``config.json``. :func:`load_slamkit` builds the inner causal LM from
``base_config`` with ``vocab_size`` set to the wrapper's (slamkit resizes the inner LM to it),
loads the ``lm.``-prefixed weights (single file or sharded) without the prefix, and rebuilds the
tokenizer exactly as slamkit does. :func:`convert_checkpoint` writes the result as a plain HF
directory (config, weights, tokenizer with the unit tokens and markers) that
``AutoModelForCausalLM`` / ``AutoTokenizer`` load as they are, and that NDIF can serve.

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
    present = [t for t in SLAMKIT_ADDED_TOKENS if t in tok.get_vocab()]
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


def _text_tokenizer_of(source: str, config: dict, text_tokenizer):
    if text_tokenizer is not None:
        return text_tokenizer, "given"
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
    import shutil
    import tempfile

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(
            f"{out} exists and is not an empty directory; convert writes a new one"
        )
    model, tok = load_slamkit(source, text_tokenizer=text_tokenizer, dtype=dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:  # written beside the target and renamed: a killed conversion leaves no half directory
        # The inner LM's own key names (transformers would otherwise revert the key mapping that
        # read the checkpoint and write the wrapper's ``lm.`` prefix back).
        model.save_pretrained(tmp, save_original_format=False)
        tok.save_pretrained(tmp)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


__all__ = [
    "CheckpointError",
    "convert_checkpoint",
    "is_slamkit",
    "load_slamkit",
    "read_config",
    "slamkit_tokenizer",
]
