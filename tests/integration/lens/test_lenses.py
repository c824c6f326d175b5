"""Scoring every stream in one vocabulary pass equals scoring each stream alone."""

import pytest
import torch

import speech_interp as si
from speech_interp.lens import (
    LogitLens,
    TunedLens,
)

from tolerance import assert_close_float

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["logit", "tuned"])
def test_streams_scored_together_equal_streams_scored_one_by_one(models, data, kind):
    model, layout = models["tl"], models["layout"]
    lens = LogitLens(model) if kind == "logit" else TunedLens.from_model(model)
    if kind == "tuned":  # a non-identity translator per layer
        torch.manual_seed(0)
        for p in lens.parameters():
            torch.nn.init.normal_(p, std=0.1)
    prompt = data[0].to_prompt(layout, model.tokenizer)
    resid = si.residual_stack(model, prompt.input_ids[None])[:, 0]
    n = resid.shape[1]
    qpos, qtok = torch.tensor([0, n - 1, 3, 3]), torch.tensor([5, 7, 1, layout.vocab_size - 1])
    with torch.no_grad():
        together = lens.score_streams(resid, qpos, qtok, layout, chunk_size=40)
        for layer, got in enumerate(together):
            alone = lens.score(layer, resid[layer], qpos, qtok, layout, chunk_size=40)
            assert torch.equal(got.rank_text, alone.rank_text)
            assert torch.equal(got.rank_full, alone.rank_full)
            assert torch.equal(got.top_text_id, alone.top_text_id)
            # float32 log-sum-exp over the vocabulary (terms <= 1); positions differ by >= 4e-4
            assert_close_float(got.speech_mass, alone.speech_mass, ops=layout.vocab_size, scale=1)
    with pytest.raises(ValueError, match="got 2 streams"):
        lens.score_streams(resid[:2], qpos, qtok, layout)
