"""Where the blocks, final norm, embedding and unembedding live in an HF causal LM.

Both backends name the residual stream the TransformerLens way (``blocks.{i}.hook_resid_pre`` /
``hook_resid_post``); for nnsight and plain HF models these paths say which modules carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModulePaths:
    """Dotted attribute paths inside an HF ``*ForCausalLM``."""

    blocks: str
    final_norm: str
    unembed: str
    embed: str


LLAMA_LIKE = ModulePaths(
    blocks="model.layers", final_norm="model.norm", unembed="lm_head", embed="model.embed_tokens"
)
GPT2_LIKE = ModulePaths(
    blocks="transformer.h",
    final_norm="transformer.ln_f",
    unembed="lm_head",
    embed="transformer.wte",
)

# model_type -> paths; everything Llama-shaped (Qwen2, Mistral, Helium, ...) uses the default.
_BY_MODEL_TYPE = {"gpt2": GPT2_LIKE}


def module_paths(model_type: str) -> ModulePaths:
    """Paths for an HF ``config.model_type``."""
    return _BY_MODEL_TYPE.get(model_type, LLAMA_LIKE)


def get_submodule(root, path: str):
    """Follow a dotted path (works on torch modules and nnsight envoys)."""
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def hf_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder blocks of an HF causal LM, with a clear error when they are not found."""
    paths = module_paths(model.config.model_type)
    try:
        return get_submodule(model, paths.blocks)
    except AttributeError as err:
        raise AttributeError(
            f"cannot find decoder blocks at {paths.blocks!r} in {type(model).__name__}; "
            "add its ModulePaths to speech_interp.hooks.modules"
        ) from err
