from typer.testing import CliRunner

from speech_interp.cli import app


def test_models_lists_families():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for family in ("sims", "spiritlm", "spiritlm-expressive", "organism", "generic"):
        assert f"{family}:" in result.output
    assert "<Un(\\d+)>" in result.output and "[Speech]" in result.output
