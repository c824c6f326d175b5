"""Rows checkpoints (organism v3): the shipped files, their format and the lens-choice rule."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from speech_interp.extend import ROWS_FILE, ROWS_INFO, is_rows_dir, save_rows
from speech_interp.hooks import ORGANISM
from speech_interp.hooks.organism import SMOL_MODELS, shipped_name
from speech_interp.organism.smol import SMOL_VARIANTS
from speech_interp.organism.smol_demo import (
    SMOL_TUNED_DIR,
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
    assert (info["init"], info["mix"]) == SMOL_VARIANTS[info["variant"]]
    assert info["added_tokens"] == list(ORGANISM.added_tokens)
    rows = load_file(path / ROWS_FILE)["rows"]
    assert rows.dtype == torch.float16 and rows.shape == (len(ORGANISM.added_tokens), 576)
    assert torch.isfinite(rows).all()
    assert len(info["losses"]) == info["config"]["steps"]
    assert info["loss_last20"] < info["loss_first20"]  # training moved the loss


def test_save_rows_names_a_missing_field(tmp_path):
    with pytest.raises(ValueError, match="'n_text'"):
        save_rows(torch.zeros(2, 3), {"variant": "x", "init": "random", "seed": 0}, tmp_path)
    info = {"variant": "x", "init": "random", "seed": 0, "n_text": 5, "added_tokens": ["a", "b"]}
    out = save_rows(torch.randn(2, 3), info, tmp_path / "x")
    assert is_rows_dir(out) and not is_rows_dir(tmp_path)
    assert load_file(out / ROWS_FILE)["rows"].dtype == torch.float16


def test_lens_choice_follows_the_stated_rule():
    """Lowest mean KL to final on held-out text over streams 1..L-1, among the candidates."""
    curves = pd.read_csv(SMOL_TUNED_DIR / "text_curves.csv")
    last = curves["layer"].max()
    inner = curves[(curves["layer"] > 0) & (curves["layer"] < last)]
    mean = inner.groupby("lens")["kl_to_final"].mean()
    for lens in ("logit", "tuned"):
        assert text_kl(lens) == pytest.approx(mean[lens])
    for variant in SMOL_MODELS:
        cands = candidate_lenses(variant)
        assert chosen_lens(variant) == min(cands, key=lambda name: mean[name])
    assert candidate_lenses("smol-random-init") == ["logit"]
