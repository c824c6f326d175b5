"""The readout computed from logits kept at its positions only equals a hand-written full
forward, on both backends, with and without gradients."""

import pytest
import torch

import speech_interp as si
from speech_interp.core.edits import Readout, capture, gradients, kept_logits, run_edited

from tolerance import TINY_READOUT_OPS, assert_close_float

pytestmark = pytest.mark.integration


def _by_hand(hf, ids, readout):
    with torch.no_grad():
        logp = hf(ids).logits.float().log_softmax(-1)  # every position, full vocabulary
    rows = torch.arange(ids.shape[0])[:, None]
    picked = logp[rows, readout.positions, readout.targets]
    return (picked * readout.weights).sum(-1)


def test_kept_logits_readout_equals_the_full_forward(models):
    hf = si.hf_model(models["tl"])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, hf.config.vocab_size, (3, 17), generator=g)
    positions = torch.tensor([[16, 3, 3, 9], [0, 5, 16, 2], [7, 7, 7, 7]])
    targets = torch.randint(0, hf.config.vocab_size, positions.shape, generator=g)
    readout = Readout(positions, targets, torch.rand(positions.shape, generator=g))
    kw, kept = kept_logits(models["tl"], readout)
    assert kw["logits_to_keep"].tolist() == [0, 2, 3, 5, 7, 9, 16]
    assert (kw["logits_to_keep"][kept.positions] == positions).all()
    expected = _by_hand(hf, ids, readout)

    def close(actual):  # float32 rounding at size ~20; a wrong position or token moves it ~0.2
        assert_close_float(actual, expected, ops=TINY_READOUT_OPS)

    for name in ("tl", "nnsight"):
        model = models[name]
        close(run_edited(model, ids, [], readout))
        close(capture(model, ids, [(0, "resid_pre")], readout)[1])
        close(gradients(model, ids, [(1, "resid_pre")], readout)[2])
    with pytest.raises(ValueError, match="readout positions must lie in 0..16"):
        run_edited(models["tl"], ids, [], Readout(positions + 1, targets, readout.weights))
