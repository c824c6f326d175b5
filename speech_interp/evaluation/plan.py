"""Time and memory plan of ``speech-interp reproduce`` on a GPU, as an estimate from the model's
config (nothing is loaded).

**Memory**: the weights (parameters x bytes per parameter, :func:`speech_interp.core.memory.
weights_bytes`) plus the largest single forward of the run: an ablation batch (the base run,
the text direction and ``n_random`` random rows) over one prompt, by the patching-batch estimate
:func:`speech_interp.core.memory.forward_bytes`, and the lens's float32 residual stack of one
scored group (``batch_rows`` residual rows x d) with one vocabulary chunk of logits.

**Time**: forward FLOPs ~ ``2 x parameters`` per token (the unembedding counted at the kept
positions only), the lens's unembedding of every stream at every word position over the full
vocabulary, at ``efficiency`` x the GPU's dense bf16 peak. It leaves out data loading, unit
extraction (mHuBERT: small next to a 7B LM) and Python overhead, so read it as a lower bound
within a small factor.
"""

from __future__ import annotations

from types import SimpleNamespace

from speech_interp.core.memory import GiB, forward_bytes, weights_bytes

# Qwen/Qwen2.5-7B's config (SIMS-7B's base, per its model card), embedding rows as published
QWEN25_7B = SimpleNamespace(
    hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False, model_type="qwen2",
)  # fmt: skip


def reproduce_plan(
    cfg,
    *,
    n_utterances: int = 3 * 281,
    prompt_tokens: int = 120,
    word_positions: int = 60,
    completion_tokens: int = 40,
    causal_words: int = 3 * 80,
    n_random: int = 20,
    batch_rows: int = 4096,
    chunk_size: int = 8192,
    bytes_per_param: int = 2,
    gpu_gib: float = 80.0,
    peak_tflops: float = 312.0,
    efficiency: float = 0.3,
) -> dict:
    """The estimate (module docstring) for ``n_utterances`` fact renderings (281 items x 3 by
    default) of about ``prompt_tokens`` tokens, ``word_positions`` of them inside words."""
    L, d, vocab = cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size
    params = weights_bytes(cfg, 1)
    weights = weights_bytes(cfg, bytes_per_param)
    batch = n_random + 2
    ablation = forward_bytes(cfg, prompt_tokens, 1, batch, bytes_per_param)
    lens_group = batch_rows * d * 4 + batch_rows * chunk_size * 4
    peak = weights + max(ablation, lens_group)
    body = 2 * (params - 2 * vocab * d)  # FLOPs per token without the embedding and unembedding
    unembed = 2 * vocab * d
    lens = n_utterances * (prompt_tokens * body + (L + 1) * word_positions * unembed)
    knowledge = n_utterances * 4 * ((prompt_tokens + completion_tokens) * (body + unembed))
    causal = causal_words * batch * (prompt_tokens * body + 1 * unembed)
    rate = peak_tflops * 1e12 * efficiency
    seconds = {name: flops / rate for name, flops in
               (("lens", lens), ("knowledge", knowledge), ("causal", causal))}  # fmt: skip
    return {
        "parameters": params,
        "weights_gib": weights / GiB,
        "peak_gib": peak / GiB,
        "fits": peak <= 0.9 * gpu_gib * GiB,
        "gpu_gib": gpu_gib,
        "seconds": seconds,
        "total_minutes": sum(seconds.values()) / 60,
        "assumptions": (
            f"{n_utterances} renderings of ~{prompt_tokens} tokens ({word_positions} in words), "
            f"{causal_words} causal words x {batch} rows, {bytes_per_param}-byte weights, "
            f"{efficiency:.0%} of a {peak_tflops:.0f} TFLOP/s dense bf16 peak"
        ),
    }


def plan_markdown(plan: dict, name: str) -> str:
    """The plan as the README states it."""
    s = plan["seconds"]
    return (
        f"{name}: {plan['parameters'] / 1e9:.2f} B parameters, weights {plan['weights_gib']:.1f} "
        f"GiB, estimated peak {plan['peak_gib']:.1f} GiB of {plan['gpu_gib']:.0f} GiB "
        f"({'fits' if plan['fits'] else 'does NOT fit'}); compute about "
        f"{s['lens'] / 60:.1f} min lens + {s['knowledge'] / 60:.1f} min spoken knowledge + "
        f"{s['causal'] / 60:.1f} min causal = {plan['total_minutes']:.1f} min "
        f"(estimate: {plan['assumptions']})"
    )


__all__ = ["QWEN25_7B", "plan_markdown", "reproduce_plan"]
