"""The main job on the shipped organism, in a quick setting."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speech_interp.cli import app
from speech_interp.hooks.organism import SMOL_MODELS
from speech_interp.organism import SHIPPED_DATA, SHIPPED_MODELS
from speech_interp.organism.demo import CAUSAL_MODELS
from speech_interp.organism.smol_demo import SMOL_TARGETS, chosen_lens

pytestmark = pytest.mark.integration
VERDICTS = {"load-bearing", "decodable-only", "neither", "insufficient-data"}


QUICK_REPORT = Path(__file__).parents[3] / "docs" / "demo" / "quick" / "report.md"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def assert_same_report(fresh: str, committed: str) -> None:
    """The same text and integers, and every decimal within one unit of its last printed digit
    (a rate printed as 0.14 may round to 0.15 on another CPU; nothing else may differ)."""
    assert NUMBER.split(fresh) == NUMBER.split(committed), "the report's text changed"
    for a, b in zip(NUMBER.findall(fresh), NUMBER.findall(committed), strict=True):
        digits = len(b.partition(".")[2])
        if digits == 0:  # counts, layers, seeds
            assert a == b, f"{a} != {b} (committed)"
        assert abs(float(a) - float(b)) <= 1.01 * 10**-digits, f"{a} != {b} (committed)"


def test_assert_same_report_sees_a_change():
    assert_same_report("| full | 0.14 [0.08, 0.20] | 1223 |", "| full | 0.15 [0.08, 0.20] | 1223 |")
    with pytest.raises(AssertionError):
        assert_same_report("| full | 0.17 [0.08, 0.20] |", "| full | 0.14 [0.08, 0.20] |")
    with pytest.raises(AssertionError):
        assert_same_report("| full | 4 | 1222 |", "| full | 4 | 1223 |")
    with pytest.raises(AssertionError):
        assert_same_report("| fill | 0.14 |", "| full | 0.14 |")


def test_quick_demo_writes_the_committed_report(tmp_path):
    """``demo --quick`` reads organism v4 (gate, lens chosen on text, transcription beside its
    ceiling, knobs, verdicts), and its report is the committed docs/demo/quick/report.md
    (regenerate: ``speech-interp demo --quick --out docs/demo/quick``, then keep report.md and
    v4.json)."""
    from speech_interp.hooks.organism import V4_CAUSAL, V4_MODELS

    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("v4_lens.csv", "v4_hearing.csv", "v4_curves.png", "v4.json", "report.md"):
        assert (out / name).stat().st_size > 0, name
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 0 and run["weights_sha256"] and run["packages"]["torch"]
    assert set(run["model_seconds"]) == set(V4_MODELS) and run["v2"] is None
    v4 = json.loads((out / "v4.json").read_text())
    assert set(v4["models"]) == set(V4_MODELS)
    for name, m in v4["models"].items():
        assert m["lens"] in ("logit", "current") and isinstance(m["gate"]["hears"], bool)
        ceil = m["intermediate_ceiling"]
        assert m["lens"] == max(ceil, key=lambda k: (ceil[k], k == "logit"))  # the stated rule
        assert (m["verdict"] is not None) == (name in V4_CAUSAL)
        for b in (m["verdict"] or {"bands": []})["bands"]:
            assert b["verdict"] in VERDICTS
    assert {k["knob"] for k in v4["knobs"]} >= {"v4-random-init", "v4-speech-only"}
    assert_same_report((out / "report.md").read_text(), QUICK_REPORT.read_text())


def test_demo_v2_run_writes_every_output(tmp_path):
    """The organism-v2 run (``demo --all`` puts it under v2/), at a small size."""
    from speech_interp.organism.demo import run_v2

    out = tmp_path / "v2"
    run_v2(out, limit=6, max_words=8, viewer_utterances=6)
    for name in ("lens.csv", "phases.json", "phase_curves.png", "viewer.html", "report.md"):
        assert (out / name).stat().st_size > 0, name
    run = json.loads((out / "run.json").read_text())
    assert set(run["model_seconds"]) == set(SHIPPED_MODELS) and "smol" not in run
    verdict = json.loads((out / "verdict.json").read_text())
    assert set(verdict) == set(CAUSAL_MODELS)
    for content in verdict.values():
        assert [b["band"] for b in content["bands"]] == ["1-2", "3-4", "5-5"]
        assert all(b["verdict"] in VERDICTS for b in content["bands"])
    report = (out / "report.md").read_text()
    for variant in SHIPPED_MODELS:
        assert f"| {variant} | " in report
    assert "after_uniqueness" in report and "pre_onset" in report
    assert "## Organism v3" not in report  # behind --all
    best = json.loads((out / "best_layers.json").read_text())
    n = len(SHIPPED_MODELS)
    assert len(best["heldout"]) == n and len(best["seen_in_training"]) == n  # facts apart
    assert len(best["spoken_knowledge"]) == n and best["knobs"] == []  # knob cells not shipped
    t = best["heldout"][0]["transcription"]
    assert t["position_rule"] == "after_uniqueness"
    assert t["excess"][0] == pytest.approx(t["rate"][0] - t["control"][0])
    assert t["excess_pre_onset"][0] == pytest.approx(t["rate"][0] - t["pre_onset"][0])
    assert run["n_seen_in_training"] == 6 and run["n_utterances"] == 6


def test_demo_all_adds_organism_v3(tmp_path):
    """``--all``: organism v2 under v2/ and the organism-v3 section (SmolLM2 + speech rows)
    after the v2 models."""
    top = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--all", "--out", str(top), "--limit", "2", "--max-words", "4",
              "--smol-limit", "1", "--no-causal"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((top / "run.json").read_text())["v2"] == "v2/report.md"
    assert "v2/report.md" in (top / "report.md").read_text()
    out = top / "v2"
    run = json.loads((out / "run.json").read_text())
    smol = json.loads((out / "smol.json").read_text())
    assert smol["n_utterances"] == 1 and set(smol["models"]) == set(SMOL_MODELS)
    assert {(r["variant"], r["lens"]) for r in smol["rows"]} >= {("smol", "tuned")}
    assert smol["chosen_lens"] == {v: chosen_lens(v) for v in SMOL_MODELS}
    assert {k["target"] for k in smol["knobs"]} == {"smol", "smol-lora"}
    assert "smol-separate" in {k["knob"] for k in smol["knobs"]}
    assert "## Organism v3" in (out / "report.md").read_text()
    assert (out / "smol_lens.csv").exists() and run["smol"]["models"] == list(SMOL_MODELS)


def test_smol_verdicts_use_the_targets(tmp_path):
    """The v3 section's causal test runs on one target per recipe, in the chosen lens's bands."""
    from speech_interp.organism.jobs import DemoJob
    from speech_interp.organism.smol_demo import run_smol

    job = DemoJob(tmp_path, "tl", SHIPPED_DATA, "eval", 1, 0, 3, False, 1)
    section = run_smol(job, limit=1, variants=("smol",), causal_models=("smol",),
                       all_lenses=False)  # fmt: skip
    bands = section["verdicts"]["smol"]["bands"]
    assert [b["band"] for b in bands] == ["1-10", "11-20", "21-29"]
    assert all(b["verdict"] in VERDICTS for b in bands)
    assert (tmp_path / "ablation_smol.png").stat().st_size > 0
    assert set(SMOL_TARGETS) <= set(SMOL_MODELS)


def test_demo_numbers_do_not_depend_on_the_worker_processes(tmp_path):
    """The same models in this process and in two worker processes: the same files."""
    from speech_interp.organism.demo import run_v2

    kw = dict(variants=("full", "planted", "full-seed1"), causal_models=("planted",), limit=4,
              max_words=6, viewer_utterances=2, smol=False)  # fmt: skip
    run_v2(tmp_path / "one", workers=1, **kw)
    run_v2(tmp_path / "two", workers=2, **kw)
    for name in ("best_layers.json", "verdict.json", "lens.csv", "phases.json", "report.md",
                 "ablation_planted.csv", "viewer.html"):  # fmt: skip
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    runs = [json.loads((tmp_path / d / "run.json").read_text()) for d in ("one", "two")]
    assert [r["workers"] for r in runs] == [1, 2]
