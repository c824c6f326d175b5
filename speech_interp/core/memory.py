"""Memory planning for batched forward passes: what a batch needs, what is free, which batch fits.

The estimate of one patching batch (:func:`patch_batch_bytes`) counts what is alive at its peak
in an inference forward: one block's activations (the residual, the attention projections and
scores, the MLP's hidden layer), the batch's KV cache and the float32 logits and log-softmax at
the read-out positions. It is an upper-side estimate for planning, not an allocator trace.
"""

from __future__ import annotations

import torch

from speech_interp.models import hf_model

GiB = 2**30


def free_bytes(device: torch.device | str) -> int:
    """Free memory where ``device``'s tensors live: the CUDA device's free memory, else the
    machine's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def model_device(model) -> torch.device:
    """The device of the model's first parameter."""
    return next(hf_model(model).parameters()).device


def patch_batch_bytes(model, n_tokens: int, n_readout: int, batch: int) -> int:
    """Estimated peak bytes of one patching forward: ``batch`` rows of ``n_tokens`` tokens whose
    metric reads ``n_readout`` positions (see the module docstring)."""
    size = next(hf_model(model).parameters()).element_size()
    return forward_bytes(hf_model(model).config, n_tokens, n_readout, batch, size)


def forward_bytes(cfg, n_tokens: int, n_readout: int, batch: int, size: int) -> int:
    """:func:`patch_batch_bytes` from an HF config and the bytes per activation element."""
    d, ff, vocab = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or d // heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    block = batch * n_tokens * (6 * d + 3 * ff) * size
    scores = batch * heads * n_tokens * n_tokens * size
    cache = batch * cfg.num_hidden_layers * 2 * n_tokens * kv * head_dim * size
    logits = batch * n_readout * vocab * 4 * 2
    return int(block + scores + cache + logits)


def weights_bytes(cfg, size: int) -> int:
    """Bytes of a decoder-only LM's weights from its HF config (attention and its biases, gated
    MLP, norms, embedding, and the unembedding unless tied), ``size`` bytes per parameter."""
    d, ff, vocab, L = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or d // heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    attn = 2 * d * heads * head_dim + 2 * d * kv * head_dim
    # q/k/v biases: Qwen2 always has them (its config has no flag), others say attention_bias
    if getattr(cfg, "attention_bias", getattr(cfg, "model_type", None) == "qwen2"):
        attn += heads * head_dim + 2 * kv * head_dim
    per_layer = attn + 3 * d * ff + 2 * d
    tied = getattr(cfg, "tie_word_embeddings", False)
    return int((L * per_layer + vocab * d * (1 if tied else 2) + d) * size)


def plan_batch_size(
    model,
    n_tokens: int,
    n_readout: int,
    requested: int | None = None,
    *,
    free: int | None = None,
    fraction: float = 0.8,
    cap: int = 256,
) -> int:
    """The batch size to run: ``requested`` if its estimate fits in ``fraction`` of the free
    memory, else a clear error with the numbers; with ``requested=None`` the largest power of
    two up to ``cap`` that fits. ``free``: bytes free (default: :func:`free_bytes` of the
    model's device)."""
    free = free_bytes(model_device(model)) if free is None else free
    budget = fraction * free

    def need(b: int) -> int:
        return patch_batch_bytes(model, n_tokens, n_readout, b)

    fits = [b for b in (2**i for i in range(cap.bit_length())) if b <= cap and need(b) <= budget]
    if requested is not None:
        if requested < 1:
            raise ValueError(f"batch_size must be >= 1, got {requested}")
        if need(requested) > budget:
            hint = f"use a batch size of at most {fits[-1]}" if fits else "no batch fits"
            raise ValueError(
                f"a batch of {requested} patched cells of {n_tokens} tokens needs about "
                f"{need(requested) / GiB:.2f} GiB, and {fraction:.0%} of the {free / GiB:.2f} "
                f"GiB free is {budget / GiB:.2f} GiB: {hint}"
            )
        return requested
    if not fits:
        raise ValueError(
            f"even one patched cell of {n_tokens} tokens needs about {need(1) / GiB:.2f} GiB, "
            f"more than {fraction:.0%} of the {free / GiB:.2f} GiB free"
        )
    return fits[-1]


__all__ = [
    "forward_bytes",
    "free_bytes",
    "model_device",
    "patch_batch_bytes",
    "plan_batch_size",
    "weights_bytes",
]
