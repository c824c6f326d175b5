"""The GPU plan's parameter count is the model's own, and the 7B estimate is Qwen2.5-7B's size."""

from __future__ import annotations

import pytest

from speech_interp.core.memory import GiB, weights_bytes
from speech_interp.evaluation.plan import QWEN25_7B, reproduce_plan
from speech_interp.models import hf_model

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", ["sims-qwen2", "sims-llama"])
def test_weights_bytes_counts_every_parameter(tiny_model_dirs, name):
    import speech_interp as si

    loaded, _ = si.load(tiny_model_dirs(name), backend="nnsight")
    hf = hf_model(loaded)
    n = sum(p.numel() for p in hf.parameters())  # tied weights are one parameter here
    assert weights_bytes(hf.config, 1) == n
    assert weights_bytes(hf.config, 2) == 2 * n


def test_7b_plan():
    plan = reproduce_plan(QWEN25_7B)
    assert plan["parameters"] == pytest.approx(7.62e9, rel=0.01)  # Qwen2.5-7B: 7.61 B
    assert plan["weights_gib"] == pytest.approx(7.62e9 * 2 / GiB, rel=0.01) and plan["fits"]
    small = reproduce_plan(QWEN25_7B, n_utterances=10)
    assert small["seconds"]["lens"] < plan["seconds"]["lens"]
    assert not reproduce_plan(QWEN25_7B, bytes_per_param=4, gpu_gib=24)["fits"]
