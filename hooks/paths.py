"""Where each part of an HF causal LM lives, per architecture, and the one accessor to it.

Both backends name the residual stream the TransformerLens way (``blocks.{i}.hook_resid_pre`` /
``hook_resid_post``); for nnsight and plain HF models these paths say which modules carry it.
Model-level roles (``blocks``, ``final_norm``, ``unembed``, ``embed``) are dotted paths from the
``*ForCausalLM``; block-level roles (``attn``, ``mlp``) are paths inside one decoder block.
A new architecture is one :class:`ModulePaths` entry in :data:`BY_MODEL_TYPE`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MODEL_ROLES = ("blocks", "final_norm", "unembed", "embed")
BLOCK_ROLES = ("attn", "mlp")


@dataclass(frozen=True)
class ModulePaths:
    """Dotted attribute paths inside an HF ``*ForCausalLM`` (attn / mlp: inside a block)."""

    blocks: str
    attn: str
    mlp: str
    final_norm: str
    unembed: str
    embed: str


LLAMA_LIKE = ModulePaths(
    blocks="model.layers",
    attn="self_attn",
    mlp="mlp",
    final_norm="model.norm",
    unembed="lm_head",
    embed="model.embed_tokens",
)
GPT2_LIKE = replace(
    LLAMA_LIKE, blocks="transformer.h", attn="attn", final_norm="transformer.ln_f",
    embed="transformer.wte",
)  # fmt: skip

# model_type -> paths; everything Llama-shaped (Qwen2, Mistral, Helium, ...) uses the default.
BY_MODEL_TYPE: dict[str, ModulePaths] = {"gpt2": GPT2_LIKE}


# model_type -> why its modules are not mapped (an error, instead of a wrong guess)
UNMAPPED: dict[str, str] = {
    "chatglm": "ChatGLM (GLM-4-Voice) runs remote code whose module layout could not be checked "
    "here (ChatGLM2/3 keep activations sequence-first); its layers are not mapped yet",
}


def module_paths(model_type: str) -> ModulePaths:
    """Paths for an HF ``config.model_type``."""
    if model_type in UNMAPPED:
        from .spec import SpecError

        raise SpecError(f"model_type {model_type!r}: {UNMAPPED[model_type]}")
    return BY_MODEL_TYPE.get(model_type, LLAMA_LIKE)


def get_submodule(root, path: str):
    """Follow a dotted path (works on torch modules and nnsight envoys)."""
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def submodule(model, role: str, layer: int | None = None):
    """The module playing ``role`` in an HF causal LM or an nnsight model (its envoy).

    ``role`` is one of :data:`MODEL_ROLES`, or one of :data:`BLOCK_ROLES` with the block's
    ``layer``. A path that does not exist in the model is an error that names the fix.
    """
    if role not in MODEL_ROLES + BLOCK_ROLES:
        raise ValueError(f"unknown module role {role!r}; known: {MODEL_ROLES + BLOCK_ROLES}")
    if (role in BLOCK_ROLES) != (layer is not None):
        raise ValueError(f"role {role!r} {'needs' if role in BLOCK_ROLES else 'takes no'} layer")
    model_type = model.config.model_type
    paths = module_paths(model_type)
    path = paths.blocks if role in BLOCK_ROLES else getattr(paths, role)
    try:
        module = get_submodule(model, path)
        if role in BLOCK_ROLES:
            module = get_submodule(module[layer], getattr(paths, role))
    except AttributeError as err:
        raise AttributeError(
            f"cannot find the {role} of {type(model).__name__} (model_type {model_type!r}) at "
            f"{path!r}; add a ModulePaths entry for it to speech_interp.hooks.paths.BY_MODEL_TYPE"
        ) from err
    return module


__all__ = [
    "BLOCK_ROLES",
    "BY_MODEL_TYPE",
    "MODEL_ROLES",
    "ModulePaths",
    "get_submodule",
    "module_paths",
    "submodule",
]
