"""read-runs: trained runs read as the demo reads the shipped v4 models, knobs pooled over seeds."""

import json

import pytest
from typer.testing import CliRunner

from speech_interp.cli import app
from speech_interp.organism import ORGANISM_DIR

pytestmark = pytest.mark.integration


def test_read_runs_reads_each_run_and_pools_the_knobs(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    for name, shipped in (("full", "v4-full"), ("random-init", "v4-random-init"),
                          ("full-seed1", "v4-full-seed1")):  # fmt: skip
        (root / name).symlink_to(ORGANISM_DIR / shipped)
    out = tmp_path / "out"
    args = ["organism", "read-runs", "--root", str(root), "--out", str(out), "--limit", "12",
            "--workers", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "runs.json").read_text())
    assert set(data["models"]) == {"full", "random-init", "full-seed1"}
    (seed0,) = data["knobs"]  # seed 1 has no random-init run: no row, and not pooled
    assert seed0["full"] == "full" and seed0["knob"] == "random-init" and seed0["seed"] == 0
    (pooled,) = data["pooled_knobs"]
    assert pooled["seeds"] == [0] and pooled["n"] == seed0["n"]
    assert pooled["difference"] == pytest.approx(seed0["difference"])
    assert pooled["lowers"] == (seed0["difference"][1] > 0)
    md = (out / "runs.md").read_text()
    assert "Knobs pooled over seeds" in md and "| full-seed1 |" in md
    for name in ("runs_lens.csv", "runs_hearing.csv"):
        assert (out / name).is_file()
    bad = CliRunner().invoke(app, ["organism", "read-runs", "--root", str(tmp_path / "none")])
    assert bad.exit_code == 2 and "--root" in bad.output  # the box may wrap the long path
    bad = CliRunner().invoke(app, [*args[:4], "--causal", "bogus"])
    assert bad.exit_code == 2 and "bogus" in bad.output


def test_runs_table_names_the_train_smol_runs_it_leaves_out(tmp_path):
    import shutil

    shutil.copytree(ORGANISM_DIR / "v4-full", tmp_path / "full")
    shutil.copytree(ORGANISM_DIR / "smol", tmp_path / "smol")  # a rows checkpoint (train-smol)
    table = tmp_path / "runs.md"
    res = CliRunner().invoke(app, ["organism", "runs", "--root", str(tmp_path), "--out",
                                   str(table)])  # fmt: skip
    assert res.exit_code == 0, res.output
    text = table.read_text()
    assert len([line for line in text.splitlines() if line.startswith("| small-40 | full |")]) == 1
    assert "1 train-smol runs (rows checkpoints) are not in this table: smol" in text
