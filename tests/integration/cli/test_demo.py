"""The main job on the shipped organism, in a quick setting."""

import json

import pytest
from typer.testing import CliRunner

from speech_interp.cli import app
from speech_interp.hooks.organism import SMOL_MODELS
from speech_interp.organism import SHIPPED_MODELS
from speech_interp.organism.demo import CAUSAL_MODELS
from speech_interp.organism.smol_demo import SMOL_TARGETS, chosen_lens

pytestmark = pytest.mark.integration
VERDICTS = {"load-bearing", "decodable-only", "neither", "insufficient-data"}


def test_demo_writes_lens_plots_and_report(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--limit", "6", "--max-words", "8", "--smol-limit", "3"]
    )
    assert result.exit_code == 0, result.output
    for name in ("lens.csv", "phases.json", "phase_curves.png", "viewer.html", "report.md"):
        assert (out / name).stat().st_size > 0, name
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 0 and run["weights_sha256"] and run["packages"]["torch"]
    verdict = json.loads((out / "verdict.json").read_text())
    assert set(verdict) == set(CAUSAL_MODELS)
    for content in verdict.values():
        assert [b["band"] for b in content["bands"]] == ["1-2", "3-4", "5-5"]
        assert all(b["verdict"] in VERDICTS for b in content["bands"])
    report = (out / "report.md").read_text()
    for variant in SHIPPED_MODELS:
        assert f"| {variant} | " in report
    assert "after_uniqueness" in report and "pre_onset" in report
    best = json.loads((out / "best_layers.json").read_text())
    n = len(SHIPPED_MODELS)
    assert len(best["heldout"]) == n and len(best["seen_in_training"]) == n  # facts apart
    assert len(best["spoken_knowledge"]) == n and len(best["knobs"]) == 6  # 3 seeds x 2 knobs
    knob = best["knobs"][0]
    lo, hi = knob["difference"][1:]
    assert lo <= knob["difference"][0] <= hi
    t = best["heldout"][0]["transcription"]
    assert t["position_rule"] == "after_uniqueness"
    assert t["excess"][0] == pytest.approx(t["rate"][0] - t["control"][0])
    assert t["excess_pre_onset"][0] == pytest.approx(t["rate"][0] - t["pre_onset"][0])
    assert run["n_seen_in_training"] == 6 and run["n_utterances"] == 6
    # organism v3 (SmolLM2 + speech rows), at --limit's size
    smol = json.loads((out / "smol.json").read_text())
    assert smol["n_utterances"] == 3 and set(smol["models"]) == set(SMOL_MODELS)
    assert {(r["variant"], r["lens"]) for r in smol["rows"]} >= {
        ("smol", "logit"),
        ("smol", "tuned"),
    }
    assert smol["chosen_lens"] == {v: chosen_lens(v) for v in SMOL_MODELS}
    assert set(smol["verdicts"]) == set(SMOL_TARGETS)  # one per recipe (controls: smol-eval)
    for target in SMOL_TARGETS:
        bands = smol["verdicts"][target]["bands"]
        assert [b["band"] for b in bands] == ["1-10", "11-20", "21-29"]
        assert all(b["verdict"] in VERDICTS for b in bands)
        assert {k["knob"] for k in smol["knobs"] if k["target"] == target} <= {
            f"{target}-random-init",
            f"{target}-speech-only",
            f"{target}-separate",
        }
    assert {k["target"] for k in smol["knobs"]} == {"smol", "smol-lora"}
    assert "smol-separate" in {k["knob"] for k in smol["knobs"]}
    assert ("smol-lora", "tuned") in {(r["variant"], r["lens"]) for r in smol["rows"]}
    assert "## Organism v3" in report or "## Organism v3" in (out / "report.md").read_text()
    assert (out / "ablation_smol.png").stat().st_size > 0 and (out / "smol_lens.csv").exists()
    assert run["smol"]["models"] == list(SMOL_MODELS)


def test_demo_numbers_do_not_depend_on_the_worker_processes(tmp_path):
    """The same models in this process and in two worker processes: the same files."""
    from speech_interp.organism.demo import run_demo

    kw = dict(variants=("full", "planted", "random-init"), causal_models=("planted",), limit=4,
              max_words=6, viewer_utterances=2, smol=False)  # fmt: skip
    run_demo(tmp_path / "one", workers=1, **kw)
    run_demo(tmp_path / "two", workers=2, **kw)
    for name in ("best_layers.json", "verdict.json", "lens.csv", "phases.json", "report.md",
                 "ablation_planted.csv", "viewer.html"):  # fmt: skip
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    runs = [json.loads((tmp_path / d / "run.json").read_text()) for d in ("one", "two")]
    assert [r["workers"] for r in runs] == [1, 2]
