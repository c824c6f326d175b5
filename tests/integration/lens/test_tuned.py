"""Tuned lens: training beats the logit lens, round trips, and tuned-lens 0.2 can load it."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import speech_interp as si
from speech_interp.lens import (
    LogitLens,
    TunedLens,
    kl_to_final,
    run_lens,
)

pytestmark = pytest.mark.integration
N_BOOT = 200


def test_tuned_lens_beats_logit_lens_and_round_trips(models, tmp_path, make_utterances):
    model, layout = models["tl"], models["layout"]
    tok = model.tokenizer
    train = [u.to_prompt(layout, tok) for u in make_utterances(24, seed=2, text_every=2)]
    held_out = [u.to_prompt(layout, tok) for u in make_utterances(8, seed=3, text_every=2)]
    lens = TunedLens.from_model(model)
    assert all((p == 0).all() for p in lens.parameters())  # identity at init
    logit = kl_to_final(LogitLens(model), model, held_out)
    torch.testing.assert_close(
        torch.tensor(kl_to_final(lens, model, held_out).kl.values), torch.tensor(logit.kl.values)
    )
    losses = lens.fit(model, train, steps=80, lr=1e-2, seed=0, progress=False)
    assert losses[-1] < losses[0]
    tuned = kl_to_final(lens, model, held_out)
    L = si.n_layers(model)
    assert (tuned.kl[:L] < logit.kl[:L]).all(), (tuned.kl.tolist(), logit.kl.tolist())
    assert tuned.kl[L] == pytest.approx(0.0, abs=1e-6)

    lens.save(tmp_path / "tuned")
    state = torch.load(tmp_path / "tuned" / "params.pt", weights_only=True)
    assert sorted(state) == sorted(f"{i}.{p}" for i in range(L) for p in ("weight", "bias"))
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert (config["d_model"], config["num_hidden_layers"]) == (32, L)
    assert config["lens_type"] == "linear_tuned_lens"
    loaded = TunedLens.load(tmp_path / "tuned", model=model)
    resid = si.residual_stack(model, held_out[0].input_ids[None])[:, 0]
    for layer in range(L + 1):
        assert torch.equal(
            lens.logits_at(layer, resid[layer]), loaded.logits_at(layer, resid[layer])
        )
    data = make_utterances(2, seed=4)
    a = run_lens(model, layout, data, lens=lens, progress=False, n_boot=N_BOOT)
    b = run_lens(model, layout, data, lens=loaded, progress=False, n_boot=N_BOOT)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    assert set(a.summary.lens) == {"tuned"}


def test_saved_lens_is_loadable_by_tuned_lens(models, tmp_path):
    """tuned-lens 0.2 checks unembed_hash (sha256 of numpy's 1-decimal string of the matrix)
    and always builds and zeroes each translator's bias."""
    import hashlib

    model = models["tl"]
    lens = TunedLens.from_model(model, bias=False)
    with torch.no_grad():
        for t in lens.layer_translators:
            t.weight.normal_(0, 0.01)
    lens.save(tmp_path / "nobias")
    config = json.loads((tmp_path / "nobias" / "config.json").read_text())
    w = si.hf_model(model).lm_head.weight.detach().float().numpy()
    assert (
        config["unembed_hash"] == hashlib.sha256(np.array_str(w, precision=1).encode()).hexdigest()
    )
    assert config["bias"] is True
    state = torch.load(tmp_path / "nobias" / "params.pt", weights_only=True)
    assert all((state[f"{i}.bias"] == 0).all() for i in range(lens.n_layers))
    loaded = TunedLens.load(tmp_path / "nobias", model=model)
    resid = torch.randn(5, 32)
    for layer in range(lens.n_layers + 1):
        assert torch.equal(lens.logits_at(layer, resid), loaded.logits_at(layer, resid))
    config["unembed_hash"] = "0" * 64
    (tmp_path / "nobias" / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="unembed_hash mismatch"):
        TunedLens.load(tmp_path / "nobias", model=model)
