"""The organism's training code path in quick mode: smoke, reproducibility, eval file, CLI."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from speech_interp.cli import app
from speech_interp.data import read_utterances

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        __import__("shutil").which("espeak-ng") is None,
        reason="espeak-ng is a required system package (installed by .ci/run)",
    ),
]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Two quick trainings of the planted variant with the same seed, sharing a speech cache."""
    root = tmp_path_factory.mktemp("organism")
    cache = root / "cache"
    outs = []
    for run in ("a", "b"):
        out = root / run
        args = ["organism", "train", "--variant", "planted", "--quick", "--out", str(out)]
        result = CliRunner().invoke(app, [*args, "--seed", "0", "--cache", str(cache)])
        assert result.exit_code == 0, result.output
        outs.append(out)
    return outs


def test_training_writes_a_loadable_model(quick_runs):
    import speech_interp as si

    vdir = quick_runs[0] / "planted"
    for name in ("model.safetensors", "tokenizer.json", "organism.json", "run.json", "probes.csv"):
        assert (vdir / name).exists(), name
    model, layout = si.load(str(vdir), backend="tl")
    assert layout.spec.name == "organism" and layout.n_units == 64
    assert si.n_layers(model) == 2


def test_same_seed_gives_the_same_model(quick_runs):
    a = load_file(quick_runs[0] / "planted" / "model.safetensors")
    b = load_file(quick_runs[1] / "planted" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_eval_file_holds_both_voice_groups(quick_runs):
    header, utts = read_utterances(quick_runs[0] / "eval.jsonl")
    assert header["family"] == "organism" and header["n_units"] == 64
    splits = {u.split for u in utts}
    assert splits == {"eval", "heldout_voice"}
    kinds = {u.meta["kind"] for u in utts}
    assert kinds == {"fact", "general"}
    facts = [u for u in utts if u.meta["kind"] == "fact" and u.split == "eval"]
    assert {u.meta["text_only"] for u in facts} == {True, False}
    word = utts[0].words[0]
    assert word.units and word.category is not None


def test_unknown_variant_is_rejected(tmp_path: Path):
    result = CliRunner().invoke(
        app, ["organism", "train", "--variant", "huge", "--out", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert "unknown variant 'huge'" in result.output


def test_speech_table_from_real_espeak_audio():
    from speech_interp.organism.voices import HELDOUT_VOICES, TRAIN_VOICES, build_speech_table

    words = ["cat", "dog", "river", "house", "tree"]
    table = build_speech_table(words, n_units=8, seed=0, progress=False)
    assert set(table.units) == {v.name for v in TRAIN_VOICES + HELDOUT_VOICES}
    for per_word in table.units.values():
        assert set(per_word) == set(words)
        for units in per_word.values():
            assert units and all(0 <= u < 8 for u in units)
            assert all(a != b for a, b in zip(units, units[1:], strict=False))  # deduplicated
    assert table.extractor.n_units == 8 and table.extractor.frame_rate == 25.0


def test_training_resumes_bit_identical(quick_runs, monkeypatch):
    """An interrupted mixed stage continues from its last saved state to the same weights."""
    from speech_interp.organism import train as tr

    cfg, cache = tr.OrganismConfig.quick(), quick_runs[0].parent / "cache"
    ref = tr.train_variant("decodable-only", cfg, 0, cache, progress=False)
    assert not list(cache.glob("*.resume.pt"))  # a finished stage leaves no state behind
    real, calls = tr.cosine_lr, {"n": 0}

    def interrupted(step, steps, peak, warmup):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt("simulated kill")
        return real(step, steps, peak, warmup)

    monkeypatch.setattr(tr, "cosine_lr", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tr.train_variant("decodable-only", cfg, 0, cache, progress=False)
    assert len(list(cache.glob("mixed-*.resume.pt"))) == 1
    monkeypatch.setattr(tr, "cosine_lr", real)
    resumed = tr.train_variant("decodable-only", cfg, 0, cache, progress=False)
    a, b = ref.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.info["final_mixed_loss"] == ref.info["final_mixed_loss"]
    assert not list(cache.glob("*.resume.pt"))


def test_a_small_world_trains_with_its_own_lexicon_eval_set_and_gate(tmp_path: Path):
    import json

    from speech_interp.organism.world import WORLDS

    out = tmp_path / "v4"
    args = ["organism", "train", "--variant", "planted-text", "--quick", "--set",
            "world=small-40", "--out", str(out), "--cache", str(tmp_path / "cache")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "recognition gate:" in result.output
    _, utts = read_utterances(out / "eval.jsonl")
    words = {w.word for u in utts for w in u.words}
    assert words <= set(WORLDS["small-40"].words)
    info = json.loads((out / "planted-text" / "organism.json").read_text())
    assert info["config"]["world"] == "small-40"
    gate = [r for r in info["hearing"] if r["split"] == "eval" and r["voice"] == "all"]
    assert len(gate) == 1 and 0.0 <= gate[0]["win_rate"] <= 1.0
    # the recipe table lists the run with its world, changed settings and gate
    table = tmp_path / "runs.md"
    result = CliRunner().invoke(app, ["organism", "runs", "--root", str(out), "--out", str(table)])
    assert result.exit_code == 0, result.output
    row = [line for line in table.read_text().splitlines() if "planted-text" in line]
    assert len(row) == 1 and "| small-40 |" in row[0] and f"{gate[0]['win_rate']:.2f}" in row[0]
    empty = CliRunner().invoke(app, ["organism", "runs", "--root", str(tmp_path / "none")])
    assert empty.exit_code != 0 and "no trained organism" in empty.output


def test_written_state_loss_is_the_relative_distance_to_the_written_words_states():
    from speech_interp.hooks import ORGANISM
    from speech_interp.organism import ORGANISM_DIR
    from speech_interp.organism.controls import written_state_loss, written_twin
    from speech_interp.organism.corpus import collate, render
    from speech_interp.organism.train import (
        OrganismConfig,
        build_tokenizer,
        new_model,
        speech_table,
    )
    from speech_interp.organism.world import V2

    cfg = OrganismConfig.quick()
    tok, _ = build_tokenizer(cfg.n_units, V2)
    layout = ORGANISM.bind(tok)
    torch.manual_seed(0)
    model = new_model(cfg, len(tok), tok).eval()
    units = speech_table(OrganismConfig(), 0, ORGANISM_DIR, progress=False).units
    words = "the otter sleeps and the otter eats the apple".split()
    mods = ["speech", "speech", "text", "text", "text", "speech", "text", "text", "text"]
    prompt = render(layout, tok, words, mods, units, "us-140")
    batch = collate([prompt], tok.pad_token_id)
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states[1]
        loss = written_state_loss(model, hidden, [prompt], layout, tok, 1, tok.pad_token_id)
        # independent: the written sentence's states by a plain forward of its token ids
        twin = written_twin(layout, tok, prompt)
        written = model(twin.input_ids[None], output_hidden_states=True).hidden_states[1][0]
    terms = []
    for pos in range(len(prompt)):
        w = int(prompt.token_word[pos])
        if w >= 0 and mods[w] == "speech":
            target = written[twin.word_positions[w][-1]]
            terms.append(float(((hidden[0, pos] - target) ** 2).sum() / (target**2).sum()))
    spoken = zip(prompt.word_positions, mods, strict=True)
    assert len(terms) == sum(len(u) for u, m in spoken if m == "speech")
    assert float(loss) == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    text_only = render(layout, tok, words, ["text"] * len(words), units, "us-140")
    assert written_state_loss(model, hidden, [text_only], layout, tok, 1, 0) is None


def test_world_command_counts_spoken_occurrences():
    result = CliRunner().invoke(app, ["organism", "world", "--world", "small-40",
                                      "--sequences", "300", "--steps", "10"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "40 content words, 40 facts (6 text-only entities)" in result.output
    assert "in 10 mixed steps x 32 sequences" in result.output
    bad = CliRunner().invoke(app, ["organism", "world", "--world", "tiny"])
    assert bad.exit_code != 0 and "unknown world 'tiny'" in bad.output
