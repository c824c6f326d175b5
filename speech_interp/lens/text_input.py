"""The logit lens on *text* input: how long does a text model keep its current token decodable?

Latent transcription means a spoken word's own text token is decodable at intermediate streams.
A model that maps speech into its text pathway can show that only if the text pathway itself
keeps the current token decodable there; this diagnostic measures it on text input: per stream,
the share of text words whose own token (``current``) or the next word's token (``next``) is in
the lens top-k over the text vocabulary, with 95% CIs resampling word types.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from speech_interp.core.residuals import residual_stack
from speech_interp.data.utterances import Utterance
from speech_interp.lens.registry import as_lens
from speech_interp.stats import bootstrap_ci


@torch.no_grad()
def text_input_lens(
    model, layout, utterances: list[Utterance], *, k: int = 5, seed: int = 0
) -> pd.DataFrame:
    """One row per stream and target (``current`` / ``next``): rate, CI, n (content words of
    the utterances rendered as text)."""
    lens = as_lens("logit", model)
    text = layout.text_mask
    hits: dict[str, list[np.ndarray]] = {"current": [], "next": []}
    types: dict[str, list[str]] = {"current": [], "next": []}
    for utt in utterances:
        words = tuple(replace(w, modality="text", units=None) for w in utt.words)
        as_text = replace(utt, words=words)
        prompt = as_text.to_prompt(layout, model.tokenizer)
        stack = residual_stack(model, prompt.input_ids[None])[:, 0]
        ids = prompt.input_ids
        for w, word in enumerate(utt.words):
            if not word.content:
                continue
            pos = int(prompt.word_positions[w][-1])
            logits = torch.stack([lens.logits_at(s, stack[s, pos]) for s in range(len(stack))])
            top = logits.masked_fill(~text.to(logits.device), -torch.inf).topk(k, -1).indices
            hits["current"].append((top == ids[pos]).any(-1).numpy())
            types["current"].append(word.word)
            if pos + 1 < len(ids) and w + 1 < len(utt.words):
                hits["next"].append((top == ids[pos + 1]).any(-1).numpy())
                types["next"].append(utt.words[w + 1].word)
    rows = []
    for target, values in hits.items():
        if not values:
            continue
        stacked = np.stack(values).astype(float)
        mean, lo, hi = bootstrap_ci(stacked, seed=seed, clusters=np.array(types[target]))
        for s in range(stacked.shape[1]):
            rows.append(
                dict(layer=s, target=target, k=k, value=float(mean[s]), ci_low=float(lo[s]),
                     ci_high=float(hi[s]), n=len(stacked))
            )  # fmt: skip
    return pd.DataFrame(rows)
