"""Shared fixtures: tiny random speech-text LMs saved with save_pretrained (no downloads)."""

from __future__ import annotations

import pytest

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
