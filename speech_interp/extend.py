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

from pathlib import Path

import torch

from speech_interp.artifacts import atomic_dir
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

FORMATS = ("sims", "spiritlm", "plain")
SPIRITLM_TOKENS = SPIRITLM.added_tokens
UNIT_INIT_RULE = (
    "transformers resize_token_embeddings (mean_resizing=True, as slamkit's UnitLM.__init__ "
    "calls it): new rows ~ normal with the text LM's embedding mean and covariance, seeded"
)


def load_text_lm(text_lm: str, *, gguf_file: str | None = None, dtype=torch.float32):
    """(HF causal LM, tokenizer) of a text LM: ``smollm2``, a GGUF file, a dir or a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from speech_interp.models import check_hub_source, resolve_source

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


__all__ = ["FORMATS", "UNIT_INIT_RULE", "extend_vocabulary", "load_text_lm", "make_checkpoint"]
