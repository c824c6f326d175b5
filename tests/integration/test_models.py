"""Loading: family detection, user-loaded models, the Helium adapter, and bad input."""

import subprocess
import sys

import pytest
import torch

import speech_interp as si
from speech_interp.hooks import SpecError
from speech_interp.testing import tiny_prompt_ids, tiny_tokenizer

pytestmark = pytest.mark.integration
TOL = 1e-5


def test_load_detects_sims_on_saved_qwen2(tiny_model_dirs):
    model, layout = si.load(tiny_model_dirs("sims-qwen2"), backend="nnsight")
    assert layout.spec.name == "sims" and layout.n_units == 500
    assert type(si.hf_model(model)).__name__ == "Qwen2ForCausalLM"
    assert si.backend_of(model) == "nnsight"


def test_layout_for_user_loaded_model(tiny_model_dirs):
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(tiny_model_dirs("spiritlm-llama"), device="cpu")
    layout = si.layout_for(bridge)
    assert layout.spec.name == "spiritlm" and si.backend_of(bridge) == "tl"


def test_helium_adapter_through_entry_point(tiny_model_dirs):
    path = tiny_model_dirs("sims-helium")
    bridge, layout = si.load(path, backend="tl")
    nn_model, _ = si.load(path, backend="nnsight")
    ids = tiny_prompt_ids(layout, bridge.tokenizer)
    assert (si.residual_stack(bridge, ids) - si.residual_stack(nn_model, ids)).abs().max() <= TOL


def test_fresh_process_discovers_entry_point():
    code = (
        "from transformer_lens.factories.architecture_adapter_factory import "
        "ArchitectureAdapterFactory as F\n"
        "from transformer_lens.config import TransformerBridgeConfig as C\n"
        "cfg = C(d_model=32, d_head=8, n_layers=2, n_ctx=64, d_vocab=600, "
        "architecture='HeliumForCausalLM')\n"
        "a = F.select_architecture_adapter(cfg)\n"
        "print(type(a).__module__, type(a).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["speech_interp.hooks.helium", "HeliumArchitectureAdapter"]


def test_model_without_speech_tokens_is_rejected(tmp_path):
    from speech_interp.testing import save_tiny_model

    path = save_tiny_model(tmp_path / "text", "text-only", "qwen2")
    with pytest.raises(SpecError, match="no speech-unit tokens"):
        si.load(str(path), backend="nnsight")


def test_tokenizer_that_does_not_match_model(tiny_model_dirs):
    tok = tiny_tokenizer("spiritlm-expressive")  # 1166 ids, the sims model has fewer rows
    with pytest.raises(SpecError, match="tokenizer does not match the model"):
        si.load(tiny_model_dirs("sims-qwen2"), backend="nnsight", tokenizer=tok)


def test_bad_backend_and_names(tiny_model_dirs):
    with pytest.raises(ValueError, match="backend must be one of"):
        si.load(tiny_model_dirs("sims-qwen2"), backend="jax")
    model, _ = si.load(tiny_model_dirs("sims-qwen2"), backend="tl")
    with pytest.raises(ValueError, match="layer 5 out of range"):
        si.get_residuals(model, torch.tensor([[1, 2]]), ["blocks.5.hook_resid_pre"])
    with pytest.raises(ValueError, match="not a residual-stream name"):
        si.get_residuals(model, torch.tensor([[1, 2]]), ["blocks.0.attn.hook_z"])
    with pytest.raises(TypeError, match="expected a TransformerLens"):
        si.backend_of(torch.nn.Linear(2, 2))
    with pytest.raises(FileNotFoundError, match="organism variant 'nope'"):
        si.load("organism:nope")
