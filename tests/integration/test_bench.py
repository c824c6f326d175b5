"""The benchmarks run end to end in a quick setting (their full-size numbers are in the README)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, *args: str) -> str:
    cmd = [sys.executable, str(BENCH / script), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_lens_bench_quick():
    out = _run("bench_lens.py", "--layers", "1", "--seq", "32", "--repeats", "1", "--vocab", "4096")
    assert "error" not in out, out
    for ratio in ("time ours / plain forward+unembed", "peak memory ours / TL naive"):
        values = [float(v) for v in re.findall(rf"{re.escape(ratio)} = ([0-9.]+)", out)]
        assert len(values) == 2 and all(v > 0 for v in values), out  # organism + Qwen-shaped


def test_patching_bench_quick_agrees_with_transformer_lens():
    out = _run("bench_patching.py", "--layers", "1", "--d-model", "16", "--words", "3")
    diff = float(re.search(r"max abs difference of the patched metric: (\S+)", out).group(1))
    assert diff <= 1e-5, out
    assert re.search(r"speed ratio \(TL / ours\): [0-9.]+x", out), out


def test_organism_training_bench_quick(tmp_path):
    """Every variant of one seed trains in two side-by-side processes; times are reported."""
    out = _run("bench_organism_training.py", "--out", str(tmp_path), "--quick")
    assert re.search(r"all 8 variants: \d+ s wall = [0-9.]+x the 60 min target", out), out
    for variant in ("full", "random-speech-only", "planted", "decodable-only"):
        assert (tmp_path / variant / "model.safetensors").exists(), variant
        assert re.search(rf"^{variant}\s+\d+ s$", out, re.M), out


def test_demo_bench_quick(tmp_path):
    """The demo in a fresh process on 2 sentences, first with an empty cache then cached: wall
    times as ratios to their targets, the cache left behind, workers and each stage reported."""
    out = _run("bench_demo.py", "--out", str(tmp_path), "--", "--limit", "2", "--max-words", "4")
    assert re.search(r"first run: [0-9.]+ s = [0-9.]+x the 300 s target", out), out
    assert re.search(r"cached run: [0-9.]+ s = [0-9.]+x the 240 s target", out), out
    assert re.search(r"cache after it: \d+ MB", out), out
    assert re.search(r"workers: \d+ x \d+ torch threads", out), out
    for stage in ("gate", "lens choice", "lens", "ablation"):
        assert re.search(rf"^{stage} +[0-9.]+ +[0-9.]+%$", out, re.M), out
    assert "model seconds: " in out


def test_ceiling_bench_quick():
    out = _run("bench_ceiling.py", "--models", "organism", "--limit", "3")
    assert re.search(r"organism: lens [0-9.]+ s, text ceiling [0-9.]+ s; \(lens \+ ceiling\) / "
                     r"lens = [0-9.]+x \(target <= 1.5x\)", out), out  # fmt: skip
