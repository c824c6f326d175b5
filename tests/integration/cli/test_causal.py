"""The ``patch``, ``ablate`` and ``substitute`` commands end to end on a tiny model (typer)."""

import json

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from speech_interp.causal import PATCH_COLUMNS, VERDICTS
from speech_interp.cli.causal import ablate_command, patch_command, substitute_command
from speech_interp.data import write_utterances
from speech_interp.testing import causal_utterances

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    app.command("patch")(patch_command)
    app.command("ablate")(ablate_command)
    app.command("substitute")(substitute_command)
    return app


@pytest.fixture(scope="module")
def setup(tiny_model_dirs, tmp_path_factory):
    data = write_utterances(
        tmp_path_factory.mktemp("data") / "utts.jsonl", causal_utterances(), family="sims"
    )
    return tiny_model_dirs("sims-qwen2"), data


def _invoke(app, args):
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_patch_command(app, setup, tmp_path):
    model, data = setup
    out = tmp_path / "patch"
    args = ["patch", "--model", model, "--data", str(data), "--out", str(out), "--max-pairs", "3",
            "--blocks", "0-1", "--batch-size", "16"]  # fmt: skip
    _invoke(app, args)
    table = pd.read_csv(out / "patch.csv")
    assert list(table.columns[: len(PATCH_COLUMNS)]) == PATCH_COLUMNS
    assert set(table.method) == {"exact", "attribution"}
    for name in ("patch_summary.csv", "rank_agreement.csv", "pairs.csv", "run.json",
                 "patch_heatmap_speech.png", "patch_heatmap_text.png", "attribution_scatter.png",
                 "patch_cells.log"):  # fmt: skip
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "patch" and run["n_pairs"] == 3 and run["blocks"] == [0, 1]
    _invoke(app, args)  # a rerun resumes from the checkpoint: same table
    pd.testing.assert_frame_equal(pd.read_csv(out / "patch.csv"), table)
    bad = CliRunner().invoke(app, [*args[:-4], "--blocks", "0-7"])
    assert bad.exit_code == 2 and "out of range" in bad.output


def test_ablate_command_writes_verdict(app, setup, tmp_path):
    model, data = setup
    out = tmp_path / "ablate"
    _invoke(app, ["ablate", "--model", model, "--data", str(data), "--out", str(out),
                  "--streams", "1-1,1-2", "--backend", "nnsight", "--remote", "local",
                  "--n-random", "20"])  # fmt: skip
    by_model = json.loads((out / "verdict.json").read_text())
    assert list(by_model) == [model]  # one format: model id -> its verdicts
    verdict = by_model[model]
    assert [b["band"] for b in verdict["bands"]] == ["1-1", "1-2"]
    for band in verdict["bands"]:
        assert band["verdict"] in VERDICTS
        assert {"excess", "ci_low", "ci_high", "rate", "control_rate"} <= set(
            band["decodable_rate"]
        )
        assert {"effect", "ci_low", "ci_high", "effect_size"} <= set(band["causal_effect"])
        assert band["control_effect"]["n_random"] == 20
    assert "load-bearing" in verdict["rule"]
    run = json.loads((out / "run.json").read_text())
    # causal_utterances has text words after spoken ones: the speech metric skips those, counted
    assert any(r["metric"] == "speech" and "is not spoken" in r["reason"] for r in run["skipped"])
    for name in ("ablation.csv", "ablation_summary.csv", "lens.csv", "run.json",
                 "ablation_speech.png", "ablation_text.png"):  # fmt: skip
        assert (out / name).exists(), name


def test_substitute_command(app, setup, tmp_path):
    model, data = setup
    out = tmp_path / "sub"
    _invoke(app, ["substitute", "--model", model, "--data", str(data), "--out", str(out),
                  "--alpha", "0.5,1", "--max-pairs", "4"])  # fmt: skip
    table = pd.read_csv(out / "substitution.csv")
    assert set(table.alpha) == {0.5, 1.0} and set(table.band) == {"1-1"}
    assert (out / "substitution_summary.csv").exists() and (out / "run.json").exists()


def test_deprecated_layers_flag(app, setup, tmp_path):
    model, data = setup
    args = ["substitute", "--model", model, "--data", str(data), "--max-pairs", "2"]
    with pytest.warns(DeprecationWarning, match="use --streams"):
        _invoke(app, [*args, "--out", str(tmp_path / "old"), "--layers", "1-2"])
    _invoke(app, [*args, "--out", str(tmp_path / "new"), "--streams", "1-2"])
    old, new = (pd.read_csv(tmp_path / d / "substitution.csv") for d in ("old", "new"))
    pd.testing.assert_frame_equal(old, new)
    both = CliRunner().invoke(app, [*args, "--streams", "1-2", "--layers", "1-2"])
    assert both.exit_code == 2 and "--layers is its deprecated old name" in both.output
    bad = CliRunner().invoke(app, [*args, "--streams", "1-9"])
    assert bad.exit_code == 2 and "stream band 1-9 out of range" in bad.output


def test_remote_needs_nnsight(app, setup, tmp_path):
    model, data = setup
    res = CliRunner().invoke(app, ["ablate", "--model", model, "--data", str(data), "--out",
                                   str(tmp_path), "--remote", "local"])  # fmt: skip
    assert res.exit_code != 0 and "needs --backend nnsight" in res.output


def test_unknown_split_is_a_usage_error(app, setup, tmp_path):
    model, data = setup
    res = CliRunner().invoke(app, ["ablate", "--model", model, "--data", str(data), "--out",
                                   str(tmp_path), "--split", "nope"])  # fmt: skip
    assert res.exit_code == 2 and "no utterance has split 'nope'" in res.output


def test_data_defaults_and_sentence_selection(app, setup, tmp_path):
    from speech_interp.cli.common import load_for_command
    from speech_interp.organism import SHIPPED_DATA

    model, data = setup
    res = CliRunner().invoke(app, ["ablate", "--model", model, "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--data is required" in res.output
    # an organism without --data: the shipped evaluation set, its eval split, held-out sentences
    utts, _, layout, info = load_for_command("organism:full", None, "tl", None)
    assert layout.spec.name == "organism"
    assert info == {"data": str(SHIPPED_DATA), "split": "eval", "sentences": "heldout",
                    "n_utterances": 300, "n_left_out_by_sentences": 120}  # fmt: skip
    assert {u.split for u in utts} == {"eval"}
    assert not any(u.meta.get("seen_in_training") for u in utts)
    seen, *_ = load_for_command("organism:full", None, "tl", None, sentences="seen")
    assert len(seen) == 120 and {u.meta["kind"] for u in seen} == {"fact"}
    res = CliRunner().invoke(app, ["ablate", "--model", model, "--data", str(data), "--out",
                                   str(tmp_path), "--sentences", "seen"])  # fmt: skip
    assert res.exit_code == 2 and "no seen sentence" in res.output
