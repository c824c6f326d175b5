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


def _main_error(capsys, argv):
    from speech_interp.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    return exit_info.value.code, err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["lens", "--model", "./no/such/dir", "--data", "{data}"], "model directory not found"),
        (["lens", "--model", "organism:nope", "--data", "{data}"], "variant 'nope' is not shipped"),
        (["lens", "--model", "organism", "--data", "/no/such.jsonl"], "data file not found"),
        (["lens", "--model", "organism", "--data", "{bad}"], "bad.jsonl:2: not JSON"),
        (
            ["lens", "--model", "organism", "--data", "{data}", "--backend", "foo"],
            "backend must be one of",
        ),
    ],
)
def test_user_errors_are_one_line(capsys, tmp_path, argv, needle):
    from speech_interp.organism import SHIPPED_DATA

    bad = tmp_path / "bad.jsonl"
    bad.write_text(SHIPPED_DATA.read_text().splitlines()[0] + "\n{not json\n")
    code, err = _main_error(capsys, [a.format(data=SHIPPED_DATA, bad=bad) for a in argv])
    assert code == 1 and len(err.splitlines()) == 1 and needle in err, err
    assert err.startswith("error: ") and err.endswith("(--debug for the traceback)")


def test_remote_ndif_without_key_fails_before_anything(capsys, monkeypatch, tmp_path):
    from speech_interp.organism import SHIPPED_DATA

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    out = tmp_path / "out"
    argv = ["ablate", "--model", "organism", "--data", str(SHIPPED_DATA), "--backend", "nnsight",
            "--remote", "ndif", "--out", str(out)]  # fmt: skip
    code, err = _main_error(capsys, argv)
    assert code == 1 and "NDIF_API_KEY" in err and "--remote local" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_bad_metrics_write_nothing(capsys, tmp_path):
    from speech_interp.organism import SHIPPED_DATA

    out = tmp_path / "patch"
    code, err = _main_error(capsys, ["patch", "--model", "organism", "--data", str(SHIPPED_DATA),
                                     "--metrics", "foo", "--out", str(out)])  # fmt: skip
    assert code == 2 and "metrics must be among" in err and not out.exists()


def test_debug_shows_the_traceback():
    from speech_interp.cli import main

    with pytest.raises(FileNotFoundError, match="data file not found"):  # read before the model
        main(["--debug", "lens", "--model", "./no/such/dir", "--data", "x.jsonl"])


def test_unreachable_hub_id_fails_fast(capsys, monkeypatch):
    import huggingface_hub

    from speech_interp.organism import SHIPPED_DATA

    def offline(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "model_info", offline)
    code, err = _main_error(
        capsys, ["lens", "--model", "someone-xyz/not-a-model", "--data", str(SHIPPED_DATA)]
    )
    assert code == 1 and "not in the local Hugging Face cache and the hub cannot be reached" in err
