"""The tutorials run end to end (fast setting) and write what they promise."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"


def _run(script: str, out: Path) -> str:
    env = {**os.environ, "TUTORIAL_QUICK": "1", "TUTORIAL_OUT": str(out), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(TUTORIALS / script)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_tutorial_01_lens(tmp_path):
    stdout = _run("01_lens.py", tmp_path)
    assert "spoken word:" in stdout
    for name in ("lens.csv", "phase_curves.png", "token_heatmap.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_tutorial_02_causal(tmp_path):
    stdout = _run("02_causal.py", tmp_path)
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert set(verdict) == {"planted", "decodable-only", "full"}
    last = json.loads(stdout.strip().splitlines()[-1])
    assert set(last) == set(verdict)
