"""The utterance limit of ``lens`` and ``view``: all utterances for small models, a stated
default for real-weights sizes, ``--limit`` as given."""

import json

import pytest
import typer
from typer.testing import CliRunner

import speech_interp.cli.common as common
from speech_interp.cli import app

pytestmark = pytest.mark.integration


def test_the_default_reads_all_for_small_models_and_cuts_big_ones(models, monkeypatch, capsys):
    utterances = list(range(30))
    kept, info = common.limited(utterances, models["tl"], None)
    assert kept == utterances and info["n_read"] == 30 and info["limit"] is None
    assert common.limited(utterances, models["tl"], 4)[0] == utterances[:4]
    assert common.limited(utterances, models["tl"], 0)[0] == utterances
    monkeypatch.setattr(common, "REAL_WEIGHTS_PARAMETERS", 0)  # the tiny model counts as big
    kept, info = common.limited(utterances, models["nnsight"], None)
    assert kept == utterances[: common.REAL_WEIGHTS_LIMIT]
    assert info["limit"] == common.REAL_WEIGHTS_LIMIT and "default" in info["limit_rule"]
    assert "--limit 0 reads all" in capsys.readouterr().err
    with pytest.raises(typer.BadParameter, match="--limit must be >= 0"):
        common.limited(utterances, models["tl"], -1)


def test_lens_records_the_limit_in_run_json(tmp_path):
    out = tmp_path / "lens"
    result = CliRunner().invoke(
        app, ["lens", "--model", "organism", "--limit", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["n_utterances"] == 3
    assert run["utterance_limit"]["limit"] == 3 and run["utterance_limit"]["n_available"] == 300
