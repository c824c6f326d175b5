"""Shared fixtures: tiny random speech-text LMs saved with save_pretrained (no downloads)."""

from __future__ import annotations

import pytest
import torch

from speech_interp.testing import save_tiny_model

# (family, architecture) pairs with the real vocab layouts.
TINY_MODELS = {
    "sims-qwen2": ("sims", "qwen2"),
    "sims-llama": ("sims", "llama"),
    "spiritlm-llama": ("spiritlm", "llama"),
    "spiritlm-expressive-llama": ("spiritlm-expressive", "llama"),
    "sims-helium": ("sims", "helium"),
}


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory):
    """Directory of each tiny model, built lazily once per session."""
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            family, arch = TINY_MODELS[name]
            built[name] = str(save_tiny_model(tmp_path_factory.mktemp(name), family, arch))
        return built[name]

    return get


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and do not stall when the 2 CPUs are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    """The tiny SIMS-layout Qwen2 on both backends (same weights)."""
    import speech_interp as si

    path = tiny_model_dirs("sims-qwen2")
    tl, layout = si.load(path, backend="tl")
    nn, _ = si.load(path, backend="nnsight")
    return {"path": path, "tl": tl, "nnsight": nn, "layout": layout}
