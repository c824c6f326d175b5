"""The current-word lens and the text ceiling, on the shipped organism."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import speech_interp as si
from speech_interp.cli import app
from speech_interp.cli.lens import current_lens_texts
from speech_interp.data import read_utterances, select_sentences, select_split
from speech_interp.lens.ceiling import CEILING_FLOOR, blind_streams, text_ceiling
from speech_interp.lens.current import CurrentLens, stream_states, written_words
from speech_interp.models import hf_model
from speech_interp.organism import SHIPPED_DATA

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def heldout():
    _, utts = read_utterances(SHIPPED_DATA)
    return select_sentences(select_split(utts, "eval"), "heldout")


@pytest.fixture(scope="module")
def planted(heldout):
    model, layout = si.load("organism:planted", backend="tl")
    fit, val, source = current_lens_texts(layout, heldout, seed=0)
    lens, note = CurrentLens.build(model, layout, texts=(fit[:400], val[:100], source))
    return model, layout, lens


def test_the_ridge_map_is_the_closed_form_solution(planted, heldout):
    """Stream 3's map equals (X'X + alpha I)^-1 X'(Y - mean Y) on the standardised states."""
    model, layout, lens = planted
    fit, _, _ = current_lens_texts(layout, heldout, seed=0)
    written = written_words(layout, model.tokenizer, fit[:400])
    x = stream_states(model, written)[3].double()
    x = (x - x.mean(0)) / x.float().std(0).clamp_min(1e-6).double()
    y = hf_model(model).get_input_embeddings().weight.detach().double()[written.target]
    alpha = lens.config["alphas"][3]["alpha"]
    w = torch.linalg.solve(x.T @ x + alpha * torch.eye(x.shape[1], dtype=x.dtype),
                           x.T @ (y - y.mean(0)))  # fmt: skip
    # float64 solves by two methods; the map's entries are O(0.01-1)
    assert torch.allclose(lens.weight[3].double(), w, rtol=1e-3, atol=1e-4 * w.abs().max())
    assert torch.allclose(lens.bias[3].double(), y.mean(0), atol=1e-5)


def test_save_and_load_give_the_same_reading(planted, tmp_path, heldout):
    model, layout, lens = planted
    lens.save(tmp_path / "current")
    again = CurrentLens.load(tmp_path / "current", model=model)
    assert again.fit_word_types == lens.fit_word_types and again.reads == "current word"
    a = text_ceiling(model, layout, lens, heldout[:10], n_boot=50)
    b = text_ceiling(model, layout, again, heldout[:10], n_boot=50)
    assert a.equals(b)


def test_the_ceiling_is_the_models_own_top_k_at_the_last_stream(heldout):
    """The logit lens's ceiling at the last stream, recomputed from the model's own logits."""
    model, layout = si.load("organism:full", backend="tl")
    utts = heldout[:20]
    ceiling = text_ceiling(model, layout, si.LogitLens(model), utts, ks=(5,), n_boot=50)
    last = ceiling[(ceiling.layer == ceiling.layer.max()) & (ceiling.words == "all")]
    written = written_words(layout, model.tokenizer, [[w.word for w in u.words] for u in utts])
    hits = []
    with torch.no_grad():
        for i, ids in enumerate(written.prompts):
            logits = hf_model(model)(ids[None]).logits[0].float()
            logits[:, ~layout.text_mask] = float("-inf")
            top = logits.topk(5, dim=-1).indices
            rows = written.position[written.prompt_of == i]
            targets = written.target[written.prompt_of == i]
            hits += (top[rows] == targets[:, None]).any(-1).tolist()
    assert last["value"].item() == pytest.approx(np.mean(hits), abs=1e-12)
    assert last["n"].item() == len(hits)


def test_the_current_lens_sees_words_the_logit_lens_does_not(planted, heldout):
    """Measured on held-out sentences written as text (rule fixed in the issue): the logit
    lens is blind past stream 0 on the organism, the current lens reads words mid-network."""
    model, layout, lens = planted
    utts = heldout[:60]
    logit = text_ceiling(model, layout, si.LogitLens(model), utts, n_boot=200)
    current = text_ceiling(model, layout, lens, utts, n_boot=200)
    n = int(logit.layer.max())
    assert set(range(1, n)) <= set(blind_streams(logit))
    mid = current[(current.metric == "text_ceiling") & (current.k == 5)
                  & (current.words == "content") & current.layer.between(1, n - 1)]  # fmt: skip
    assert mid["value"].max() >= 0.5 > CEILING_FLOOR
    # the organism's grammar covers every word type, so none is unseen by this fit; a lens that
    # saw fewer types reports the others apart
    assert "text_ceiling_unseen" not in set(current.metric)
    seen = sorted(lens.fit_word_types)[::2]
    half = CurrentLens(lens.mean, lens.scale, lens.weight, lens.bias,
                       dict(lens.config, fit_word_types=seen)).bind(model)  # fmt: skip
    apart = text_ceiling(model, layout, half, utts, ks=(5,), n_boot=50)
    unseen = apart[(apart.metric == "text_ceiling_unseen") & (apart.words == "all")]
    n_unseen = sum(w.word not in set(seen) for u in utts for w in u.words[1:])
    assert len(unseen) == n + 1 and (unseen["n"] <= n_unseen).all() and unseen["n"].min() > 0


def test_lens_command_writes_the_ceiling_and_flags_blind_streams(tmp_path):
    out = tmp_path / "lens"
    result = CliRunner().invoke(
        app, ["lens", "--model", "organism:full", "--limit", "12", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(out / "lens.csv")
    ceiling = table[table.metric == "text_ceiling"]
    assert sorted(ceiling.layer.unique()) == list(range(table.layer.max() + 1))
    run = json.loads((out / "run.json").read_text())
    assert run["text_ceiling"]["blind_streams"] == blind_streams(ceiling)
    assert "blind to written words" in result.output


def test_view_shows_where_the_lens_is_blind(tmp_path):
    out = tmp_path / "view"
    result = CliRunner().invoke(
        app, ["view", "--model", "organism:full", "--utterances", "6", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert {1, 2, 3, 4, 5} <= set(run["text_ceiling"]["blind_streams"])
    assert "blind to written words" in (out / "viewer.html").read_text()


def test_ceiling_controls_separate_the_fit_from_memory(tmp_path, planted, heldout):
    """Permuted targets drop the ceiling to about chance (selectivity); a random-init copy of the
    same shape still reads a *written* word at its own token (its embedding rides the residual),
    so the ceiling is a necessary check, not evidence that training built anything."""
    import pandas as pd

    from speech_interp.lens.ceiling_controls import ceiling_controls, random_init_copy

    model, layout, fitted = planted
    texts = current_lens_texts(layout, heldout, seed=0)
    texts = (texts[0][:400], texts[1][:100], texts[2])  # the fixture's lens's texts
    random_model, _ = si.load(str(random_init_copy(model, tmp_path / "rand", seed=0)))
    rows = ceiling_controls(model, layout, heldout[:20], texts, random_model=random_model)
    at = rows[(rows.k == 5) & (rows.words == "content") & (rows.layer == 3)]
    value = dict(zip(at.lens, at.value, strict=True))
    own = text_ceiling(model, layout, fitted, heldout[:20])
    own = own[(own.k == 5) & (own.words == "content") & (own.layer == 3)].value.item()
    assert value["current-permuted"] < 0.3 < own
    assert value["current-random-init"] > 0.5
    assert isinstance(rows, pd.DataFrame) and set(rows.lens) == {
        "current-permuted",
        "current-random-init",
    }
    bad = CliRunner().invoke(
        app,
        [
            "lens",
            "--model",
            "organism",
            "--lens",
            "logit",
            "--ceiling-controls",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code != 0 and "--ceiling-controls needs --lens current" in bad.output
