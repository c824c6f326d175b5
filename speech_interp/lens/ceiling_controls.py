"""Controls for a fitted lens's text ceiling: is it the model's state, or the read-out's memory?

A current lens fitted on the very word types it is then read on can reach a high ceiling by
memorising types from any features that separate them. Two controls bound that
(:func:`ceiling_controls`), each read exactly as the ceiling is (:func:`~speech_interp.lens.
ceiling.text_ceiling`, the same utterances written as text):

- ``current-permuted``: the same fit with the targets shuffled among the fit's words
  (selectivity, Hewitt and Liang 2019): a read-out that has learnt the model's word identity
  falls to chance, one that only memorises does not care which word a state belongs to.
- ``current-random-init``: the same fit on a randomly initialised model of the same shape and
  vocabulary (weights drawn with ``seed``): what the architecture and the input embeddings give
  without any training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.lens.ceiling import text_ceiling
from speech_interp.lens.current import CurrentLens, written_words
from speech_interp.lens.unembed import causal_lm

CONTROLS = ("current-permuted", "current-random-init")


def random_init_copy(model, out_dir: Path, seed: int = 0) -> Path:
    """A randomly initialised model of ``model``'s config and tokenizer, saved in ``out_dir``
    (loadable by :func:`speech_interp.load`)."""
    from transformers import AutoModelForCausalLM

    hf = causal_lm(model)
    torch.manual_seed(seed)
    fresh = AutoModelForCausalLM.from_config(hf.config)
    fresh.save_pretrained(out_dir)
    model.tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def ceiling_controls(
    model,
    layout: TokenLayout,
    utterances: Sequence[Utterance],
    texts: tuple[Sequence[Sequence[str]], Sequence[Sequence[str]], str],
    *,
    random_model=None,
    seed: int = 0,
    model_id: str = "",
    backend: str = "",
) -> pd.DataFrame:
    """The text-ceiling rows of the two controls (module docs) on ``utterances``: a current lens
    fitted on ``texts`` (fit sentences, validation sentences, source) with permuted targets, and,
    when ``random_model`` (a loaded random-init copy with ``layout``'s family) is given, one
    fitted on it; the ``lens`` column names the control."""
    fit_sentences, val_sentences, source = texts
    fit = written_words(layout, model.tokenizer, fit_sentences)
    val = written_words(layout, model.tokenizer, val_sentences)
    gen = torch.Generator().manual_seed(seed)
    shuffled = replace(fit, target=fit.target[torch.randperm(len(fit), generator=gen)])
    frames = []
    permuted = CurrentLens.fit(model, shuffled, val, layout=layout, progress=False,
                               source=f"{source}, targets permuted")  # fmt: skip
    rows = text_ceiling(model, layout, permuted, utterances, model_id=model_id, backend=backend,
                        seed=seed)  # fmt: skip
    frames.append(rows.assign(lens=CONTROLS[0]))
    if random_model is not None:
        lens = CurrentLens.fit(random_model, fit, val, layout=layout, progress=False,
                               source=f"{source}, random-init model")  # fmt: skip
        rows = text_ceiling(random_model, layout, lens, utterances, model_id=model_id,
                            backend=backend, seed=seed)  # fmt: skip
        frames.append(rows.assign(lens=CONTROLS[1]))
    return pd.concat(frames, ignore_index=True)


__all__ = ["CONTROLS", "ceiling_controls", "random_init_copy"]
