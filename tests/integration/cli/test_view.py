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


def test_view_with_the_lens_chosen_on_text(tmp_path):
    """``--lens auto`` draws the grid with the lens it chose (current on v4-full, whose logit lens
    is blind to written words past stream 0) and records both the choice and the option."""
    out = tmp_path / "auto"
    res = CliRunner().invoke(app, ["view", "--model", "organism:v4-full", "--utterances", "2",
                                   "--lens", "auto", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["lens"] == "current" and run["lens_option"] == "auto"
    assert "auto chose current" in run["tuned_lens"]
    assert '"lens":"current"' in (out / "viewer.html").read_text()
