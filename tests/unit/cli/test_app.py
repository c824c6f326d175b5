import importlib
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from speech_interp.cli import app


def test_models_lists_families():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for family in ("sims", "spiritlm", "spiritlm-expressive", "organism", "generic"):
        assert f"{family}:" in result.output
    assert "<Un(\\d+)>" in result.output and "[Speech]" in result.output


def test_help_and_package_import_stay_light():
    """``--help`` must not import torch, TransformerLens or nnsight (fresh process)."""
    code = (
        "import sys, speech_interp.cli; "
        "print(sorted(m for m in ('torch', 'transformer_lens', 'nnsight', 'transformers') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_lazy_package_exports():
    import speech_interp as si

    assert set(si.__all__) - {"__version__"} == set(si._MODULE_OF)
    assert si.run_lens is importlib.import_module("speech_interp.lens").run_lens
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        si.nope  # noqa: B018
