"""Shared fixtures: tiny random speech-text LMs saved with save_pretrained (no downloads), and
nnsight's local simulation of NDIF made faithful to a server without this package."""

from __future__ import annotations

import importlib.abc
import sys

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
    "speechgpt-llama": ("speechgpt", "llama"),
    "mimi-llama": ("llama-mimi", "llama"),
    # GLM-4-Voice's token layout on a Llama block (its ChatGLM code is not available offline)
    "glm-voice-llama": ("glm-4-voice", "llama"),
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


class _NotOnServer(importlib.abc.MetaPathFinder):
    """Import finder that refuses this package, as an NDIF server that never installed it."""

    def find_spec(self, name, path=None, target=None):
        if name == "speech_interp" or name.startswith("speech_interp."):
            raise ModuleNotFoundError(f"No module named {name!r} (not installed on the server)")
        return None


@pytest.fixture(scope="session", autouse=True)
def server_without_this_package():
    """``remote="local"`` deserializes traces with this package unimportable.

    nnsight's simulation hides modules found on local paths, but this package is installed
    (editable or in site-packages), so it would still import by name; a real NDIF server has
    only nnsight, torch and the HF model. Every remote="local" test thus proves that what the
    trace needs of this package travels by value (:mod:`speech_interp.core.trace_ops`).
    """
    from nnsight.intervention.backends.local import LocalSimulationBackend

    hide, restore = LocalSimulationBackend._hide_local_modules, LocalSimulationBackend._restore
    blocker = _NotOnServer()

    def hide_all(self):
        hidden = hide(self)
        sys.meta_path.insert(0, blocker)
        return hidden

    def restore_all(self, hidden):
        sys.meta_path.remove(blocker)
        restore(self, hidden)

    LocalSimulationBackend._hide_local_modules = hide_all
    LocalSimulationBackend._restore = restore_all
    yield
    LocalSimulationBackend._hide_local_modules, LocalSimulationBackend._restore = hide, restore
