"""Rows checkpoints (organism v3): the shipped files, their format and the lens-choice rule."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from speech_interp.extend import LORA_FILE, ROWS_FILE, ROWS_INFO, is_rows_dir, save_rows
from speech_interp.hooks import ORGANISM
from speech_interp.hooks.organism import SMOL_MODELS, shipped_name
from speech_interp.organism.smol import LORA_TARGETS, RECIPE_STEPS, SMOL_CONTROLS, SMOL_VARIANTS
from speech_interp.organism.smol_demo import (
    SMOL_TUNED_DIR,
    TEXT_CURVES,
    candidate_lenses,
    chosen_lens,
    text_kl,
)
from speech_interp.shipped import ORGANISM_DIR


def test_variants_are_the_loadable_models():
    assert set(SMOL_VARIANTS) <= set(SMOL_MODELS)
    for name in SMOL_MODELS:
        info = json.loads((ORGANISM_DIR / name / ROWS_INFO).read_text())
        assert shipped_name(info["variant"], info["seed"]) == name
    assert all(f"organism:{v}" in ORGANISM.checkpoints for v in SMOL_MODELS)


@pytest.mark.parametrize("variant", SMOL_MODELS)
def test_shipped_rows_are_the_added_rows_in_float16(variant):
    path = ORGANISM_DIR / variant
    assert is_rows_dir(path)
    info = json.loads((path / ROWS_INFO).read_text())
    init, mix, recipe = SMOL_VARIANTS[info["variant"]]
    assert (info["init"], info["mix"], info["config"]["recipe"]) == (init, mix, recipe)
    assert info["added_tokens"] == list(ORGANISM.added_tokens)
    rows = load_file(path / ROWS_FILE)["rows"]
    assert rows.dtype == torch.float16 and rows.shape == (len(ORGANISM.added_tokens), 576)
    assert torch.isfinite(rows).all()
    assert len(info["losses"]) == info["config"]["steps"] == RECIPE_STEPS[recipe]
    assert info.get("control", "") == SMOL_CONTROLS.get(info["variant"], "")
    assert info["loss_last20"] < info["loss_first20"]  # training moved the loss
    assert (path / LORA_FILE).is_file() == (recipe == "lora")
    if recipe == "lora":
        factors = load_file(path / LORA_FILE)
        rank = info["config"]["lora_rank"]
        assert len(factors) == 2 * 30 * len(LORA_TARGETS)  # A and B, 30 layers, 7 maps each
        assert all(f.dtype == torch.float16 and torch.isfinite(f).all() for f in factors.values())
        a = factors["model.layers.0.self_attn.k_proj.lora_A.default.weight"]
        b = factors["model.layers.0.self_attn.k_proj.lora_B.default.weight"]
        assert a.shape == (rank, 576) and b.shape == (192, rank)  # 3 kv heads x 64
        assert b.abs().max() > 0  # B starts at zero: training moved the adapters
    # the lens rule's own text curves, wherever the body is not the base's
    assert (path / TEXT_CURVES).is_file() == (recipe == "lora" or init == "random")


def test_save_rows_names_a_missing_field(tmp_path):
    with pytest.raises(ValueError, match="'n_text'"):
        save_rows(torch.zeros(2, 3), {"variant": "x", "init": "random", "seed": 0}, tmp_path)
    info = {"variant": "x", "init": "random", "seed": 0, "n_text": 5, "added_tokens": ["a", "b"]}
    out = save_rows(torch.randn(2, 3), info, tmp_path / "x")
    assert is_rows_dir(out) and not is_rows_dir(tmp_path)
    assert load_file(out / ROWS_FILE)["rows"].dtype == torch.float16
    assert not (out / LORA_FILE).exists()
    with pytest.raises(ValueError, match="lora_rank"):
        save_rows(torch.randn(2, 3), info, tmp_path / "y", lora={"a": torch.zeros(1)})


def _inner_kl(path) -> pd.Series:
    curves = pd.read_csv(path)
    last = curves["layer"].max()
    inner = curves[(curves["layer"] > 0) & (curves["layer"] < last)]
    return inner.groupby("lens")["kl_to_final"].mean()


def test_lens_choice_follows_the_stated_rule():
    """Lowest mean KL to final on held-out text over streams 1..L-1, among the candidates; the
    base's curves where the body is the base's, the model's own where LoRA or the random init
    changed it."""
    base = _inner_kl(SMOL_TUNED_DIR / TEXT_CURVES)
    for lens in ("logit", "tuned"):
        assert text_kl(lens) == pytest.approx(base[lens])
    for variant in SMOL_MODELS:
        own = ORGANISM_DIR / variant / TEXT_CURVES
        mean = _inner_kl(own) if own.is_file() else base
        init, _, recipe = SMOL_VARIANTS[variant.removesuffix("-seed1")]
        assert own.is_file() == (recipe == "lora" or init == "random")
        cands = candidate_lenses(variant)
        assert chosen_lens(variant) == min(cands, key=lambda name: mean[name])
    assert candidate_lenses("smol-random-init") == ["logit"]
    assert candidate_lenses("smol-lora-random-init") == ["logit"]
