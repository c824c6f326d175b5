"""``ablate --lens``: the verdict's decodability read by the chosen lens, its ceiling beside it."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from speech_interp.cli import app

pytestmark = pytest.mark.integration


def test_ablate_reads_decodability_with_the_chosen_lens(tmp_path):
    out = tmp_path / "ablate"
    args = ["ablate", "--model", "organism:planted", "--lens", "current", "--streams", "2-3",
            "--max-pairs", "10", "--n-random", "3", "--no-probe", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["lens"] == "current" and "fitted on" in run["lens_note"]
    table = pd.read_csv(out / "lens.csv")
    assert set(table.lens) == {"current"}
    ceiling = table[table.metric == "text_ceiling"]
    assert sorted(ceiling.layer.unique()) == list(range(table.layer.max() + 1))
    assert run["blind_streams"] == []  # the current lens reads written words at every stream
    verdict = json.loads((out / "verdict.json").read_text())
    assert [b["band"] for b in verdict["organism:planted"]["bands"]] == ["2-3"]


def test_ablate_refuses_an_unknown_lens(tmp_path):
    result = CliRunner().invoke(
        app, ["ablate", "--model", "organism", "--lens", "nope", "--out", str(tmp_path)]
    )
    assert result.exit_code != 0 and "--lens must be one of" in result.output
