"""slamkit UnitLM checkpoints (SIMS as published), built in slamkit's save format: loaded on both
backends with the inner LM's logits, converted to a plain HF directory, and bad input rejected."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import speech_interp as si
from speech_interp.checkpoints import CheckpointError, convert_checkpoint, load_slamkit
from speech_interp.testing import save_tiny_slamkit, tiny_prompt_ids

pytestmark = pytest.mark.integration
TOL = 1e-5


def _logits(model, ids):
    if si.backend_of(model) == "tl":
        with torch.no_grad():
            return model(ids)
    with model.trace(ids):
        out = model.output.logits.save()
    return out


@pytest.fixture(scope="module", params=[(1, False), (2, True)], ids=["single", "sharded-tied"])
def slamkit_ckpt(request, tmp_path_factory):
    shards, tie = request.param
    return save_tiny_slamkit(tmp_path_factory.mktemp("slamkit"), shards=shards, tie_embeddings=tie)


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_load_matches_the_inner_lm(slamkit_ckpt, backend):
    ckpt, base, inner = slamkit_ckpt
    model, layout = si.load(str(ckpt), backend=backend, text_tokenizer=str(base))
    assert layout.spec.name == "sims" and layout.n_units == 500
    n_text = len(AutoTokenizer.from_pretrained(base))
    assert layout.unit_token_ids.tolist() == list(range(n_text, n_text + 500))
    assert (layout.speech_marker_id, layout.text_marker_id) == (n_text + 500, n_text + 501)
    ids = tiny_prompt_ids(layout, model.tokenizer)
    with torch.no_grad():
        ref = inner(ids).logits
    assert (_logits(model, ids) - ref).abs().max() <= TOL


def test_convert_round_trip(slamkit_ckpt, tmp_path):
    ckpt, base, inner = slamkit_ckpt
    out = convert_checkpoint(str(ckpt), tmp_path / "plain", text_tokenizer=str(base))
    assert json.loads((out / "config.json").read_text())["model_type"] == inner.config.model_type
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    _, rebuilt = load_slamkit(str(ckpt), text_tokenizer=str(base))
    assert tok.get_vocab() == rebuilt.get_vocab() and rebuilt.pad_token_id == 0  # as slamkit
    model, layout = si.load(str(out), backend="nnsight")  # a plain dir: no text_tokenizer
    ids = tiny_prompt_ids(layout, tok)
    with torch.no_grad():
        ref = inner(ids).logits
        assert (plain(ids).logits - ref).abs().max() <= TOL
    assert layout.spec.name == "sims" and (_logits(model, ids) - ref).abs().max() <= TOL


def test_text_tokenizer_errors(slamkit_ckpt, tmp_path):
    ckpt, base, _ = slamkit_ckpt
    config = json.loads((ckpt / "config.json").read_text())
    assert config["base_model_name"] == "Qwen/Qwen2.5-0.5B"
    offline = tmp_path / "offline"
    offline.mkdir()
    for f in ckpt.iterdir():
        (offline / f.name).symlink_to(f)
    (offline / "config.json").unlink()
    config["base_model_name"] = "/nonexistent/Qwen2.5-0.5B"
    (offline / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"text_tokenizer=.*--text-tokenizer") as err:
        si.load(str(offline), backend="tl")
    assert "/nonexistent/Qwen2.5-0.5B" in str(err.value)
    from speech_interp.testing import tiny_tokenizer

    other = tmp_path / "other_tok"
    tiny_tokenizer("text-only", words=["the", "a", "cat"]).save_pretrained(other)
    with pytest.raises(CheckpointError, match="does not fit this checkpoint"):
        si.load(str(ckpt), backend="tl", text_tokenizer=str(other))
    with_units = tmp_path / "with_units"
    tiny_tokenizer("sims").save_pretrained(with_units)
    with pytest.raises(CheckpointError, match="already has 502 of the speech tokens"):
        si.load(str(ckpt), backend="tl", text_tokenizer=str(with_units))


def test_base_config_that_does_not_fit_the_weights(slamkit_ckpt, tmp_path):
    ckpt, base, _ = slamkit_ckpt
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ckpt.iterdir():
        if f.name != "config.json":
            (bad / f.name).symlink_to(f)
    config = json.loads((ckpt / "config.json").read_text())
    config["base_config"]["intermediate_size"] *= 2
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit base_config"):
        load_slamkit(str(bad), text_tokenizer=str(base))


def test_text_tokenizer_only_for_slamkit(tiny_model_dirs):
    with pytest.raises(ValueError, match="text_tokenizer= is for slamkit UnitLM checkpoints"):
        si.load(tiny_model_dirs("sims-qwen2"), backend="tl", text_tokenizer="x")


def test_convert_command(slamkit_ckpt, tmp_path):
    from typer.testing import CliRunner

    from speech_interp.cli import app

    ckpt, base, _ = slamkit_ckpt
    out = tmp_path / "converted"
    res = CliRunner().invoke(
        app, ["convert", str(ckpt), "--text-tokenizer", str(base), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "family sims, 500 units" in res.output
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "convert" and run["weights_sha256"]
