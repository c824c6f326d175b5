"""Lenses validated on text: the readings recomputed from the model's own forward pass, and the
command's outputs."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import speech_interp as si
from speech_interp.cli import app
from speech_interp.cli.lens import current_lens_texts
from speech_interp.lens.current import written_words
from speech_interp.lens.text_validation import METRICS, text_validation
from speech_interp.models import hf_model
from speech_interp.organism.world import organism_world

pytestmark = pytest.mark.integration
MODEL = "organism:v4-full"


@pytest.fixture(scope="module")
def validated():
    model, layout = si.load(MODEL, backend="tl")
    _, val, _ = current_lens_texts(layout, [], 0, MODEL)
    world = organism_world(MODEL)
    sentences = val[:20]
    content = [[world.is_content(w) for w in s] for s in sentences]
    rows, counts = text_validation(model, layout, {"logit": si.LogitLens(model)}, sentences,
                                   content, ks=(5,), n_boot=50, progress=False)  # fmt: skip
    return model, layout, sentences, content, rows, counts


def _logit_hits(model, layout, written, layer, targets):
    """Top-5 hits of ``targets`` in final-norm + unembedding of stream ``layer`` (HF forward)."""
    hf = hf_model(model)
    hits = []
    with torch.no_grad():
        for i, ids in enumerate(written.prompts):
            hidden = hf(ids[None], output_hidden_states=True).hidden_states[layer][0]
            logits = hf.lm_head(hf.model.norm(hidden)).float()
            logits[:, ~layout.text_mask] = float("-inf")
            top = logits.topk(5, dim=-1).indices
            mine = written.prompt_of == i
            rows, want = written.position[mine], targets[mine]
            hits += [(t in r) for r, t in zip(top[rows].tolist(), want.tolist(), strict=True)
                     if t >= 0]  # fmt: skip
    return hits


@pytest.mark.parametrize("metric,layer", [("written_current", 3), ("written_next", 2)])
def test_logit_readings_match_the_models_own_forward(validated, metric, layer):
    model, layout, sentences, content, rows, _ = validated
    written = written_words(layout, model.tokenizer, sentences, content)
    targets = written.target if metric == "written_current" else written.next
    hits = _logit_hits(model, layout, written, layer, targets)
    got = rows[(rows.metric == metric) & (rows.layer == layer) & (rows.words == "all")]
    assert got["value"].item() == pytest.approx(np.mean(hits), abs=1e-12)
    assert got["n"].item() == len(hits)


def test_every_word_form_is_read_at_every_stream(validated):
    model, _, _, _, rows, counts = validated
    n_streams = model.cfg.n_layers + 1
    assert counts["split_words"] > 0 and counts["nonword_words"] > 0
    for metric in set(METRICS) - {"written_current_unseen", "written_current_multi_token"}:
        got = rows[(rows.metric == metric) & (rows.words == "all")]
        assert sorted(got.layer) == list(range(n_streams)), metric
    # the word in pieces is another input: stream 0 (the last piece's embedding) misses the word
    split0 = rows[(rows.metric == "split_current") & (rows.layer == 0) & (rows.words == "all")]
    plain0 = rows[(rows.metric == "split_unsplit") & (rows.layer == 0) & (rows.words == "all")]
    assert plain0["value"].item() == 1.0 and split0["value"].item() < 0.2


def test_validate_lens_command(tmp_path):
    out = tmp_path / "v"
    res = CliRunner().invoke(app, ["validate-lens", "--model", MODEL, "--lenses", "logit",
                                   "--sentences", "8", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    for name in ("text_validation.csv", "text_validation.png", "text_validation.md", "run.json"):
        assert (out / name).is_file()
    assert "written words read at stream 3" in res.output
    bad = CliRunner().invoke(app, ["validate-lens", "--model", MODEL, "--lenses", "logit,bogus"])
    assert bad.exit_code == 2 and "bogus" in bad.output
    tuned = CliRunner().invoke(app, ["validate-lens", "--model", MODEL, "--lenses", "tuned"])
    assert tuned.exit_code == 2 and "--tuned-path" in tuned.output


def test_fit_lens_target_current_saves_a_lens_the_lens_command_loads(tmp_path):
    """``fit-lens --target current`` writes a current-word lens; ``lens --lens current
    --tuned-path`` reads with it (no second fit) and ``validate-lens`` too."""
    lens_dir = tmp_path / "current"
    res = CliRunner().invoke(app, ["fit-lens", "--model", MODEL, "--target", "current",
                                   "--backend", "tl", "--out", str(lens_dir)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (lens_dir / "params.pt").is_file() and (lens_dir / "config.json").is_file()
    args = ["lens", "--model", MODEL, "--lens", "current", "--tuned-path", str(lens_dir),
            "--limit", "4", "--out", str(tmp_path / "l")]  # fmt: skip
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert '"tuned_lens": "loaded"' in (tmp_path / "l" / "run.json").read_text()
    bad = CliRunner().invoke(app, ["fit-lens", "--model", MODEL, "--target", "word", "--out",
                                   str(tmp_path / "x")])  # fmt: skip
    assert bad.exit_code == 2 and "--target" in bad.output
