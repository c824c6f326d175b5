"""The logit lens on text input against HF hidden states."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import speech_interp as si

pytestmark = pytest.mark.integration


def test_text_input_lens_matches_hand_computation(models, data, hand_logits):
    """The organism's text-pathway diagnostic, on any model: current / next word top-5 over the
    text vocabulary per stream, against HF hidden states -> final norm -> lm_head."""
    from speech_interp.lens.text_input import text_input_lens

    model, layout = models["tl"], models["layout"]
    frame = text_input_lens(model, layout, data, k=5)
    hf, mask = si.hf_model(model), layout.text_mask
    current, following = [], []
    for utt in data:
        words = tuple(replace(w, modality="text", units=None) for w in utt.words)
        prompt = replace(utt, words=words).to_prompt(layout, model.tokenizer)
        logits = hand_logits(hf, prompt.input_ids)
        top = logits.masked_fill(~mask, -torch.inf).topk(5, -1).indices  # [L+1, pos, 5]
        for w, word in enumerate(utt.words):
            if not word.content:
                continue
            pos = int(prompt.word_positions[w][-1])
            current.append((top[:, pos] == prompt.input_ids[pos]).any(-1).float())
            if w + 1 < len(utt.words):
                following.append((top[:, pos] == prompt.input_ids[pos + 1]).any(-1).float())
    for target, hits in (("current", current), ("next", following)):
        got = frame[frame.target == target].sort_values("layer")
        np.testing.assert_allclose(got["value"], torch.stack(hits).mean(0).numpy(), atol=1e-6)
        assert (got["n"] == len(hits)).all()
