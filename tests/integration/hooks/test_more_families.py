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
