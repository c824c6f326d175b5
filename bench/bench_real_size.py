"""Benchmark at a real checkpoint's size: exact patching vs TransformerLens, attribution vs exact.

A randomly initialised model with a published checkpoint's shapes (``--shape``; the vocabulary
is the text model's plus 502 speech tokens, ``--layers`` truncates the depth on small machines),
and one clean / corrupted pair of spoken prompts of ``--units`` unit tokens over ``--words``
words (the second-to-last word swapped for one of equal length, so the two prompts align token by
token; the patched prompt runs up to the last word, whose units are read out):

1. **exact patching**, resid_pre over every layer x every position of the prompt: ours (batched,
   logits at the readout positions only) against TransformerLens's own
   ``transformer_lens.patching.generic_activation_patch`` with its ``layer_pos_patch_setter`` (the
   code behind ``get_act_patch_resid_pre``), run on ``--tl-cells`` cells drawn from the grid (all
   of them by default). Prints both times per cell, TransformerLens's time extrapolated to the
   grid, the ratio and the largest difference of the patched metric on the shared cells.
2. **attribution vs exact** over the tool's patching grid (the four components x every layer x
   the positions aligned around the swapped word): time ratio and Spearman's rank correlation,
   overall and per component; and the same exact sweep on nnsight, which runs only the suffix
   after the cached unpatched prefix (TransformerLens's bridge runs the whole prompt).
3. with ``--lens-tokens N``: the logit lens over every stream and position of an N-token spoken
   prompt (750 = 30 s at 25 Hz) against the anchors of ``bench/bench_lens.py`` measured here:
   one plain forward + per-layer unembedding + top-k (time) and TransformerLens's
   ``accumulated_resid(apply_ln=True) @ W_U`` (peak GPU memory; on CPU bench_lens.py measures
   memory in separate processes).

Peak GPU memory is printed when ``--device cuda``. Everything runs in this process; the anchors
are measured in the same run. ``bench/gpu.sh`` runs it at 7B / 9B shapes in bfloat16.

    python bench/bench_real_size.py [--shape qwen2.5-0.5b] [--layers 24] [--units 250]
        [--words 16] [--tl-cells 0] [--batch-size 32] [--device cpu] [--dtype float32]
        [--skip-attribution] [--lens-tokens 0]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks' pieces
from bench_patching import ours as exact_grid  # noqa: E402

SPEECH_TOKENS = 502  # SIMS: 500 units + the two modality markers
# published text-model shapes: d_model, layers, heads, KV heads, MLP width, vocabulary
SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4_864, vocab_size=151_936),
    "qwen2.5-7b": dict(hidden_size=3_584, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, intermediate_size=18_944, vocab_size=152_064),
    # GLM-4-9B's sizes (GLM-4-Voice-9B's base; its audio tokens are in the vocabulary) in a
    # Qwen2 block: the architecture differs (ChatGLM), the cost is of the same order
    "glm-4-9b": dict(hidden_size=4_096, num_hidden_layers=40, num_attention_heads=32,
                     num_key_value_heads=2, intermediate_size=13_696, vocab_size=151_552),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=128, vocab_size=1_000),
}  # fmt: skip


def build_model(out: Path, shape: str, n_layers: int | None, dtype: torch.dtype) -> Path:
    """A random Qwen2 model with ``shape``'s sizes (+ speech tokens) and the SIMS tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from speech_interp.testing import tiny_tokenizer

    sizes = dict(SHAPES[shape])
    if n_layers:
        sizes["num_hidden_layers"] = n_layers
    tok = tiny_tokenizer("sims")
    sizes["vocab_size"] = max(sizes["vocab_size"] + SPEECH_TOKENS, len(tok))
    config = Qwen2Config(**sizes, max_position_embeddings=4096, tie_word_embeddings=True)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(dtype).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_pair(n_units: int, n_words: int, n_unit_ids: int, seed: int = 0):
    """An all-spoken pair of ``n_units`` unit tokens; the second-to-last word swapped for one of
    the same length (the patched prompt runs up to the last word: about ``n_units`` tokens)."""
    from speech_interp.data import Utterance, Word
    from speech_interp.data.pairs import Pair

    rng = random.Random(seed)
    sizes = [n_units // n_words + (i < n_units % n_words) for i in range(n_words)]
    units = [tuple(rng.randrange(n_unit_ids) for _ in range(s)) for s in sizes]
    words = tuple(Word(f"w{i}", "speech", u, "x") for i, u in enumerate(units))
    i = max(0, n_words - 2)
    swapped = Word("fish", "speech", tuple(rng.randrange(n_unit_ids) for _ in units[i]), "x")
    return Pair("bench", Utterance("clean", words), Utterance("corrupt", (*words[:i], swapped,
                *words[i + 1 :])), i)  # fmt: skip


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def tl_cells(model, task, cells: pd.DataFrame, device: str) -> torch.Tensor:
    """TransformerLens's own patching loop on the given (layer, pos) cells: one forward each."""
    from transformer_lens.patching import generic_activation_patch, layer_pos_patch_setter

    from speech_interp.core.edits import metric_from_logits

    with torch.no_grad():
        _, cache = model.run_with_cache(task.clean_ids[None].to(device))

        def metric(logits):
            return metric_from_logits(logits, task.corrupt_readout)[0]

        values = generic_activation_patch(
            model, task.corrupt_ids[None].to(device), cache, metric, layer_pos_patch_setter,
            "resid_pre", index_df=cells,
        )  # fmt: skip
    return values.flatten().cpu()


def spearman(a, b) -> float:
    return float(pd.Series(np.asarray(a)).corr(pd.Series(np.asarray(b)), method="spearman"))


def attribution_vs_exact(model, layout, pair, batch_size: int, nn_model=None) -> dict:
    from speech_interp.causal import attribution_sweep, patch_sweep

    def timed(fn):
        start = time.perf_counter()
        result = fn()
        return result, time.perf_counter() - start

    kw = dict(metrics=["speech"], progress=False)
    exact, t_exact = timed(lambda: patch_sweep(model, layout, [pair], batch_size=batch_size, **kw))
    attr, t_attr = timed(lambda: attribution_sweep(model, layout, [pair], **kw))
    keys = ["component", "layer", "position"]
    both = exact.table.merge(attr.table, on=keys, suffixes=("_exact", "_attr"))
    print(f"attribution vs exact: {len(both)} cells; exact {t_exact:.1f} s, attribution "
          f"{t_attr:.2f} s: {t_exact / t_attr:.1f}x faster")  # fmt: skip
    out = {}
    if nn_model is not None:
        nn_exact, t_nn = timed(
            lambda: patch_sweep(nn_model, layout, [pair], batch_size=batch_size, **kw)
        )
        diff = (nn_exact.table.patched - exact.table.patched).abs().max()
        speedup = t_exact / t_nn
        print(f"exact sweep on nnsight (cached prefix, skipped lower blocks): {t_nn:.1f} s = "
              f"{speedup:.1f}x faster than on the bridge; max |diff| {diff:.1e}")  # fmt: skip
        out["nnsight_prefix_speedup"] = speedup
    rho = spearman(both.value_exact, both.value_attr)
    print(f"  Spearman overall {rho:.2f}; " + ", ".join(
        f"{c} {spearman(g.value_exact, g.value_attr):.2f}" for c, g in both.groupby("component")
    ))  # fmt: skip
    return {"attribution_speedup": t_exact / t_attr, "spearman": rho, "cells": len(both), **out}


def lens_section(model, layout, n_tokens: int, device: str, chunk_size: int) -> dict:
    """Our lens vs bench_lens.py's anchors on one prompt of about ``n_tokens`` tokens."""
    from bench_lens import _method, _utterance

    import speech_interp as si

    ids = _utterance(layout, n_tokens).to_prompt(layout, model.tokenizer).input_ids[None]
    ids, hf, out = ids.to(device), si.hf_model(model), {}
    for name in ("ours", "plain", "tl_naive"):
        run = (name, model, hf, ids, layout, chunk_size)
        with torch.no_grad():
            _method(*run)  # warm-up
            _sync(device)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            _method(*run)
            _sync(device)
        out[name] = {"seconds": time.perf_counter() - start}
        if device.startswith("cuda"):
            out[name]["peak_gib"] = (torch.cuda.max_memory_allocated() - base) / 2**30
    print(f"logit lens over {si.n_layers(model) + 1} streams x {ids.shape[1]} positions: "
          + "; ".join(f"{k} {v['seconds']:.2f} s" for k, v in out.items()))  # fmt: skip
    print(f"  time ours / plain forward + unembed: "
          f"{out['ours']['seconds'] / out['plain']['seconds']:.2f}")  # fmt: skip
    if device.startswith("cuda"):
        print("  peak GPU memory above the weights: " + "; ".join(
            f"{k} {v['peak_gib']:.2f} GiB" for k, v in out.items()))  # fmt: skip
        print(f"  memory ours / TransformerLens accumulated_resid @ W_U: "
              f"{out['ours']['peak_gib'] / out['tl_naive']['peak_gib']:.3f}")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    ap.add_argument("--layers", type=int, default=0, help="truncate to N layers (0: all)")
    ap.add_argument("--units", type=int, default=250)
    ap.add_argument("--words", type=int, default=16)
    ap.add_argument("--tl-cells", type=int, default=0, help="cells TL runs (0: the whole grid)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--skip-attribution", action="store_true")
    ap.add_argument("--lens-tokens", type=int, default=0, help="also bench the lens (0: no)")
    ap.add_argument("--chunk-size", type=int, default=8192, help="the lens's vocabulary chunk")
    args = ap.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's per-cell progress bar

    import speech_interp as si
    from speech_interp.causal.tasks import build_tasks

    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        build_model(Path(tmp), args.shape, args.layers or None, dtype)
        model, layout = si.load(tmp, backend="tl", device=args.device, dtype=dtype)
        nn_model, _ = si.load(tmp, backend="nnsight", device=args.device, dtype=dtype)
    pair = make_pair(args.units, args.words, layout.n_units)
    (task,), _ = build_tasks([pair], layout, model.tokenizer, metrics=["speech"])
    L, T = si.n_layers(model), len(task.corrupt_ids)
    hf = si.hf_model(model)
    params = sum(p.numel() for p in hf.parameters())
    print(f"model: {args.shape} shapes, {L} layers, d_model {hf.config.hidden_size}, vocab "
          f"{hf.config.vocab_size:,}, {params / 1e6:.0f}M parameters, {args.dtype} on "
          f"{args.device}; prompt {T} tokens ({args.words} words)")  # fmt: skip

    with torch.no_grad():  # warm-up: lazy set-up and first-call costs charged to no one
        model(task.corrupt_ids[None].to(args.device))
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    n_cells = L * T
    grid = pd.DataFrame([(la, p) for la in range(L) for p in range(T)], columns=["layer", "pos"])
    if args.tl_cells and args.tl_cells < n_cells:
        grid = grid.sample(n=args.tl_cells, random_state=0).reset_index(drop=True)

    def timed(fn):
        _sync(args.device)
        start = time.perf_counter()
        value = fn()
        _sync(args.device)
        return value, time.perf_counter() - start

    # the tool on nnsight (suffix after a cached prefix, blocks from the lowest patched layer up)
    # over the whole grid; on the bridge (whole prompt, every block) and TransformerLens's own
    # loop over the sampled cells
    ours, t_ours = timed(lambda: exact_grid(nn_model, task, L, args.batch_size, args.device))
    bridge, t_bridge = timed(
        lambda: exact_grid(model, task, L, args.batch_size, args.device, cells=grid)
    )
    theirs, t_tl = timed(lambda: tl_cells(model, task, grid, args.device))
    at = (torch.as_tensor(grid.layer.to_list()), torch.as_tensor(grid.pos.to_list()))
    per_ours, per_bridge, per_tl = t_ours / n_cells, t_bridge / len(grid), t_tl / len(grid)
    diff = float((ours[at] - theirs).abs().max())
    diff_bridge = float((bridge[at] - theirs).abs().max())
    print(f"exact resid_pre patching, {L} x {T} = {n_cells} cells (batch {args.batch_size}):")
    print(f"  ours on nnsight, every cell: {t_ours:.1f} s ({per_ours * 1e3:.1f} ms/cell)")
    print(f"  ours on the bridge, {len(grid)} cells: {t_bridge:.1f} s "
          f"({per_bridge * 1e3:.1f} ms/cell)")  # fmt: skip
    print(f"  TransformerLens, {len(grid)} cells: {t_tl:.1f} s ({per_tl * 1e3:.1f} ms/cell, "
          f"{per_tl * n_cells:.0f} s for the grid)")  # fmt: skip
    print(
        f"  ratio (TransformerLens / ours, per cell): {per_tl / per_ours:.1f}x on nnsight, "
        f"{per_tl / per_bridge:.1f}x on the bridge; max abs difference on the {len(grid)} "
        f"shared cells: {diff:.2e} (nnsight), "
        f"{diff_bridge:.2e} (bridge)"
    )
    if args.device.startswith("cuda"):
        print(f"  peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    result = {"per_cell_ratio": per_tl / per_ours, "per_cell_ratio_bridge": per_tl / per_bridge,
              "max_diff": diff, "max_diff_bridge": diff_bridge}  # fmt: skip
    if not args.skip_attribution:
        result.update(attribution_vs_exact(model, layout, pair, args.batch_size, nn_model))
        if args.device.startswith("cuda"):
            print(f"  peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if args.lens_tokens:
        result["lens"] = lens_section(model, layout, args.lens_tokens, args.device, args.chunk_size)
    return result


if __name__ == "__main__":
    main()
