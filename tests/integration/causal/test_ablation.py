"""Direction ablation and probes on a tiny random model: zero edits change nothing, the text
direction is the lens's, backends and nnsight's remote simulation agree."""

import numpy as np
import pandas as pd
import pytest
import torch

import speech_interp as si
from speech_interp.causal import ABLATION_COLUMNS, ablate, text_directions
from speech_interp.causal.ablation import summarize_ablation
from speech_interp.causal.readouts import word_items
from speech_interp.core.edits import Edit, capture, run_edited, stream_site
from speech_interp.core.remote import RemoteError
from speech_interp.data import TargetResolver
from speech_interp.testing import causal_utterances

from tolerance import TINY_READOUT_OPS, assert_close_float

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data():
    return causal_utterances()


@pytest.fixture(scope="module")
def tl_ablation(models, data):
    return ablate(models["tl"], models["layout"], data, band="1-2", n_random=20, progress=False)


def test_zero_direction_changes_nothing(models, data):
    items, _ = word_items(data, models["layout"], models["tl"].tokenizer)
    L = si.n_layers(models["tl"])
    for backend in ("tl", "nnsight"):
        model = models[backend]
        for item in items[:4]:
            _, plain = capture(model, item.ids[None], [], item.readout)
            edits = [
                Edit.project(*stream_site(s, L), [0] * len(item.positions), item.positions,
                             torch.zeros(len(item.positions), 32))
                for s in range(L + 1)
            ]  # fmt: skip
            zero = run_edited(model, item.ids[None], edits, item.readout)
            assert torch.equal(zero, plain)


def test_ablation_table(tl_ablation, data):
    t = tl_ablation
    assert list(t.columns) == ABLATION_COLUMNS
    assert set(t.direction) == {"text", "probe", "random"} and set(t.band) == {"1-2"}
    assert set(t.metric) == {"speech", "text"}
    per_item = t.groupby(["utterance", "word_index", "metric"]).size()
    assert set(per_item) == {22}  # text + probe + 20 random
    assert np.allclose(t.effect, t.base - t.ablated)
    # every random draw is the same direction for every word
    assert sorted(t[t.direction == "random"].draw.unique()) == list(range(20))
    summary = summarize_ablation(t)
    assert set(summary.metric) == {"speech", "text"} and (summary.random_sd > 0).all()
    # the (word, metric)s a metric cannot read are listed, not dropped: here text words after
    # spoken ones, which the speech metric needs as units
    skipped = pd.DataFrame(t.attrs["skipped"])
    assert len(skipped) and set(skipped.metric) == {"speech"}
    assert all("is not spoken" in r for r in skipped.reason)
    read = set(zip(t.utterance, t.word_index, t.metric, strict=True))
    assert read.isdisjoint(zip(skipped.utterance, skipped.word_index, skipped.metric, strict=True))


def test_text_direction_is_the_lens_direction(models):
    model = models["tl"]
    hf = si.hf_model(model)
    resolver = TargetResolver(model.tokenizer, models["layout"])
    t = resolver("cat").token_id
    expected = hf.lm_head.weight[t].detach() * hf.model.norm.weight.detach()
    d = text_directions(model, [t])[0]
    assert torch.allclose(d, expected / expected.norm(), atol=1e-6)
    # after projecting it out of a final-stream vector, the lens logit of t no longer moves
    # along that vector: logit_t(norm(h)) is proportional to d . h for an RMSNorm
    h = torch.randn(32)
    h_ab = h - (h @ d) * d
    # float32 rounding of 32-long dot products at |h|; not projecting leaves h @ d, of size |h|
    assert_close_float(float(h_ab @ d), 0.0, ops=32, scale=float(h.norm()))


@pytest.mark.parametrize("remote", [False, "local"])
def test_ablation_nnsight_equals_tl(models, data, tl_ablation, remote):
    nn = ablate(models["nnsight"], models["layout"], data, band="1-2", n_random=20,
                remote=remote, progress=False)  # fmt: skip
    assert len(nn) == len(tl_ablation) and (nn.backend == "nnsight").all()
    key = ["utterance", "word_index", "metric", "direction", "draw"]
    pd.testing.assert_frame_equal(nn[key], tl_ablation[key])
    # float32 rounding of log-probability read-outs (size ~20), far below the effects (to 0.14)
    assert_close_float(nn.ablated, tl_ablation.ablated, ops=TINY_READOUT_OPS)
    assert_close_float(nn.base, tl_ablation.base, ops=TINY_READOUT_OPS)


def test_ablation_bad_input(models, data, monkeypatch):
    with pytest.raises(ValueError, match="stream band 1-3 out of range"):
        ablate(models["tl"], models["layout"], data, band="1-3", progress=False)
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(RemoteError, match="NDIF_API_KEY"):
        ablate(models["nnsight"], models["layout"], data, band="1", remote=True, progress=False)
    with pytest.raises(ValueError, match="n_random"):
        ablate(models["tl"], models["layout"], data, band="1", n_random=0, progress=False)


def test_ablation_max_words_and_no_probe(models, data):
    t = ablate(models["tl"], models["layout"], data, band="2", n_random=3, probe=False,
               max_words=2, progress=False)  # fmt: skip
    assert len(t[["utterance", "word_index"]].drop_duplicates()) == 2
    assert "probe" not in set(t.direction)


def test_probes_fit_once_give_the_same_table(models, data, tl_ablation):
    from speech_interp.causal import fit_probes

    probes = fit_probes(models["tl"], models["layout"], data, [2, 1])
    assert sorted(probes) == [1, 2] and all(p.stream == s for s, p in probes.items())
    again = ablate(models["tl"], models["layout"], data, band="1-2", n_random=20, probes=probes,
                   progress=False)  # fmt: skip
    pd.testing.assert_frame_equal(again, tl_ablation)  # probes fit on all streams at once
    with pytest.raises(ValueError, match=r"lack stream\(s\) \[0\]"):
        ablate(models["tl"], models["layout"], data, band="0-1", probes=probes, progress=False)
    with pytest.raises(ValueError, match="must lie in 0..2"):
        fit_probes(models["tl"], models["layout"], data, [1, 7])
    with pytest.raises(ValueError, match="probe=False"):
        ablate(models["tl"], models["layout"], data, band="1", probes=probes, probe=False,
               progress=False)  # fmt: skip
