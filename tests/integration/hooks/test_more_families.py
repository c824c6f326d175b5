"""SpeechGPT and Llama-Mimi layouts on tiny Llama models (their real token strings), on both
backends; GLM-4-Voice's remote code is refused unless the user opts in."""

import json
import random

import numpy as np
import pytest
import torch

import speech_interp as si
from speech_interp.data import Utterance, Word
from speech_interp.hooks import SpecError

pytestmark = pytest.mark.integration


def _utterances(layout, n=4, seed=0):
    rng = random.Random(seed)
    words = ["the", "cat", "dog", "sees", "bird", "in", "house", "park"]
    q = layout.spec.levels
    out = []
    for i in range(n):
        ws = []
        for j in range(5):
            frames = rng.randint(1, 3)
            codes = [rng.randrange(layout.n_units // q) for _ in range(frames)]
            units = tuple(c * q + level for c in codes for level in range(q))
            mod = "text" if (i + j) % 4 == 3 else "speech"
            ws.append(Word(rng.choice(words), mod, units if mod == "speech" else None, "x"))
        out.append(Utterance(f"u{i}", tuple(ws)))
    return out


@pytest.mark.parametrize("name,family", [("speechgpt-llama", "speechgpt"),
                                         ("mimi-llama", "llama-mimi")])  # fmt: skip
def test_lens_and_ablation_on_both_backends(tiny_model_dirs, name, family):
    path = tiny_model_dirs(name)
    tl, layout = si.load(path, backend="tl")
    nn, _ = si.load(path, backend="nnsight")
    assert layout.spec.name == family
    utts = _utterances(layout)
    prompt = utts[0].to_prompt(layout, tl.tokenizer)
    assert int(prompt.input_ids[1]) == layout.speech_begin_id or utts[0].words[0].modality == "text"
    a = si.residual_stack(tl, prompt.input_ids[None])
    b = si.residual_stack(nn, prompt.input_ids[None])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    res_tl = si.run_lens(tl, layout, utts, progress=False, n_boot=50)
    res_nn = si.run_lens(nn, layout, utts, progress=False, n_boot=50)
    cols = [c for c in res_tl.words.columns if c.startswith(("rank_", "control_rank_"))]
    np.testing.assert_array_equal(res_tl.words[cols].to_numpy(), res_nn.words[cols].to_numpy())
    words = res_tl.words[res_tl.words.layer == 0]
    units = [
        len(u.words[w].units) for u in utts for w in range(5) if u.words[w].modality == "speech"
    ]
    assert words.n_positions.tolist() == units  # every token of every frame is the word's
    table = si.ablate(tl, layout, utts, band="1", n_random=3, probe=False, progress=False)
    assert set(table.direction) == {"text", "random"} and table.effect.notna().all()


def test_remote_code_needs_opt_in(tiny_model_dirs, tmp_path):
    import shutil

    src = tiny_model_dirs("speechgpt-llama")
    dst = tmp_path / "remote"
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["auto_map"] = {
        "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration"
    }
    (dst / "config.json").write_text(json.dumps(config))
    with pytest.raises(SpecError, match="trust_remote_code=True"):
        si.load(str(dst), backend="nnsight")
    with pytest.raises(SpecError, match="use backend='nnsight'"):
        si.load(str(dst), backend="tl", trust_remote_code=True)


@pytest.mark.parametrize(
    "name,extra",
    [("speechgpt-llama", []), ("mimi-llama", []),
     ("glm-voice-llama", ["--backend", "nnsight", "--trust-remote-code"])],
)  # fmt: skip
def test_lens_and_ablate_commands(tiny_model_dirs, tmp_path, name, extra):
    from typer.testing import CliRunner

    from speech_interp.cli import app
    from speech_interp.data import write_utterances

    path = tiny_model_dirs(name)
    backend = "nnsight" if "nnsight" in extra else "tl"
    _, layout = si.load(path, backend=backend, trust_remote_code=bool(extra))
    data = write_utterances(tmp_path / "units.jsonl", _utterances(layout, n=6),
                            family=layout.spec.name, n_units=layout.n_units)  # fmt: skip
    for command, more in (("lens", []), ("ablate", ["--streams", "1", "--max-pairs", "4"])):
        res = CliRunner().invoke(app, [command, "--model", path, "--data", str(data), "--out",
                                       str(tmp_path / command), *extra, *more])  # fmt: skip
        assert res.exit_code == 0, res.output
    assert (tmp_path / "lens" / "lens.csv").stat().st_size > 0
    assert json.loads((tmp_path / "ablate" / "verdict.json").read_text())


def test_glm_layout_needs_the_opt_in(tiny_model_dirs):
    # the family itself declares remote code: refused without the opt-in, even without auto_map
    with pytest.raises(SpecError, match="trust_remote_code=True"):
        si.load(tiny_model_dirs("glm-voice-llama"), backend="nnsight")
