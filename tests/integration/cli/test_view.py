"""``speech-interp view`` end to end on the shipped organism."""

import json

import pytest
from typer.testing import CliRunner

from speech_interp.cli import app

pytestmark = pytest.mark.integration


def test_view_writes_a_viewer(tmp_path):
    out = tmp_path / "view"
    res = CliRunner().invoke(app, ["view", "--model", "organism:planted", "--utterances", "2",
                                   "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    page = (out / "viewer.html").read_text()
    assert "organism:planted" in page and "viewer-data" in page
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "view" and run["n_utterances"] == 2 and run["split"] == "eval"
    bad = CliRunner().invoke(app, ["view", "--model", "organism", "--utterances", "0"])
    assert bad.exit_code != 0 and "--utterances must be >= 1" in bad.output
    tuned = tmp_path / "tuned"
    res = CliRunner().invoke(app, ["view", "--model", "organism:planted", "--utterances", "2",
                                   "--lens", "tuned", "--tuned-path", str(tuned), "--tuned-steps",
                                   "5", "--out", str(tmp_path / "view2")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tuned / "params.pt").exists() and '"lens":"tuned"' in (
        tmp_path / "view2" / "viewer.html"
    ).read_text()
