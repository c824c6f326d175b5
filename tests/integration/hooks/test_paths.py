"""The one module accessor finds every role on real HF architectures, on torch modules and on
nnsight envoys, and names the fix when an architecture is unknown."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from speech_interp.hooks import submodule

pytestmark = pytest.mark.integration


def _llama():
    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    return LlamaForCausalLM(cfg)


def test_roles_on_llama_and_gpt2():
    llama = _llama()
    assert submodule(llama, "blocks") is llama.model.layers
    assert submodule(llama, "attn", 1) is llama.model.layers[1].self_attn
    assert submodule(llama, "mlp", 0) is llama.model.layers[0].mlp
    assert submodule(llama, "final_norm") is llama.model.norm
    assert submodule(llama, "unembed") is llama.lm_head
    assert submodule(llama, "embed") is llama.model.embed_tokens
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2))
    assert submodule(gpt2, "attn", 0) is gpt2.transformer.h[0].attn
    assert submodule(gpt2, "final_norm") is gpt2.transformer.ln_f


def test_roles_on_nnsight_envoys(models):
    nn = models["nnsight"]
    assert submodule(nn, "attn", 0)._module is nn._module.model.layers[0].self_attn


def test_unknown_layout_and_bad_roles():
    class Odd(torch.nn.Module):
        config = type("C", (), {"model_type": "odd"})()

    with pytest.raises(AttributeError, match="add a ModulePaths entry for it"):
        submodule(Odd(), "blocks")
    with pytest.raises(ValueError, match="unknown module role"):
        submodule(_llama(), "head")
    with pytest.raises(ValueError, match="needs layer"):
        submodule(_llama(), "attn")
