"""The shipped organism: loadable on both backends, figures reproducible from the weights."""

import json

import pytest

import speech_interp as si
from speech_interp.data import read_utterances
from speech_interp.hooks.organism import V4_MODELS
from speech_interp.models import resolve_source
from speech_interp.organism import ORGANISM_DIR, SHIPPED_MODELS
from speech_interp.organism.evaluate import heldout_losses

pytestmark = pytest.mark.integration
DATA = ORGANISM_DIR / "eval.jsonl"


@pytest.fixture(scope="module")
def utterances():
    header, utts = read_utterances(DATA)
    assert header["family"] == "organism"
    return utts


def test_every_variant_is_shipped_small():
    """Organism v4 (8 models and its world's evaluation set), v2's natural model at 3 seeds and
    its 2 controls in float16, the units and v2's evaluation set, organism v3 (rows checkpoints:
    76 KB each, 2.6 MB with LoRA factors) and the base SmolLM2's tuned lens in float16: the
    package stays under the 80 MB the project allows."""
    total = sum(p.stat().st_size for p in ORGANISM_DIR.rglob("*") if p.is_file())
    assert total <= 80 * 10**6, f"shipped organism is {total / 10**6:.1f} MB"
    for v in SHIPPED_MODELS + V4_MODELS:
        assert (ORGANISM_DIR / v / "model.safetensors").exists(), v


@pytest.mark.parametrize("variant", SHIPPED_MODELS + V4_MODELS)
def test_shipped_weights_reproduce_model_card_loss(variant, utterances):
    """Every shipped model (v2 and v4, each on its own world's evaluation set) gives the held-out
    losses recorded when it was trained."""
    from speech_interp.organism.world import eval_data, world_of

    model, layout = si.load(f"organism:{variant}", backend="tl")
    assert layout.spec.name == "organism"
    info = json.loads((ORGANISM_DIR / variant / "organism.json").read_text())
    world = world_of(ORGANISM_DIR / variant)
    if world.name != "v2":
        utterances = read_utterances(eval_data(world))[1]
        assert {w.word for u in utterances for w in u.words} <= set(world.words)
    losses = heldout_losses(si.hf_model(model), model.tokenizer, layout, utterances)
    recorded = {(r["modality"], r["voices"]): r["loss"] for r in info["heldout_loss"]}
    assert len(recorded) == len(losses)
    for _, row in losses.iterrows():
        assert abs(row["loss"] - recorded[(row["modality"], row["voices"])]) <= 1e-4


def test_organism_same_residuals_on_both_backends(utterances):
    tl_model, layout = si.load("organism", backend="tl")
    nn_model, _ = si.load("organism", backend="nnsight")
    ids = utterances[0].to_prompt(layout, tl_model.tokenizer).input_ids[None]
    diff = (si.residual_stack(tl_model, ids) - si.residual_stack(nn_model, ids)).abs().max()
    assert diff <= 1e-5


def test_planted_word_is_decodable_at_planted_layer(utterances):
    """Issue target: transcription@5 (content words, text vocab, any position) >= 0.8."""
    info = json.loads((ORGANISM_DIR / "planted" / "organism.json").read_text())
    layer = info["config"]["planted_layer"]
    model, layout = si.load("organism:planted", backend="tl")
    subset = [u for u in utterances if u.split == "eval"][:60]
    result = si.run_lens(model, layout, subset, ks=(5,), progress=False, n_boot=200)
    s = result.summary
    row = s[
        (s["metric"] == "transcription")
        & (s["layer"] == layer)
        & (s["vocab"] == "text")
        & (s["position_rule"] == "any")
        & (s["words"] == "content")
    ]
    assert float(row["value"].iloc[0]) >= 0.8


def test_resolve_shipped_variants():
    assert resolve_source("organism").endswith("weights/full")
    assert resolve_source("organism:planted").endswith("weights/planted")
    assert resolve_source("organism:full-seed2").endswith("weights/full-seed2")
