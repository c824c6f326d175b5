"""Benchmark: our batched exact resid_pre patching vs TransformerLens's
``transformer_lens.patching.get_act_patch_resid_pre`` on the same TransformerBridge.

Same inputs (a clean / corrupted pair of equal length, so TransformerLens's position-by-position
grid applies), same clean cache values, same metric (the speech read-out of
:mod:`speech_interp.causal.patching`: sum of log-probs of the next word's units). Both fill the full
layers x positions grid of resid_pre; TransformerLens runs one forward per cell, ours
``--batch-size`` cells per forward. Prints both times, the speed ratio and the max abs
difference of the patched metric.

    python bench/bench_patching.py [--layers 4] [--d-model 64] [--words 8] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import pandas as pd
import torch

import speech_interp as si
from speech_interp.causal.patching import patch_batch
from speech_interp.causal.tasks import build_tasks
from speech_interp.core.edits import Readout, capture, metric_from_logits
from speech_interp.core.kept import keep_run
from speech_interp.data import Utterance, Word
from speech_interp.data.pairs import Pair
from speech_interp.testing import save_tiny_model

WORDS = "the big cat sees a small dog in the old park near the blue river".split()


def make_pair(n_words: int, seed: int = 0) -> Pair:
    """An all-spoken pair whose swapped word has the same unit count (equal lengths)."""
    rng = random.Random(seed)
    words = [WORDS[i % len(WORDS)] for i in range(n_words)]
    units = [tuple(rng.randrange(500) for _ in range(rng.randint(2, 4))) for _ in words]
    clean = Utterance(
        "clean", tuple(Word(w, "speech", u, "x") for w, u in zip(words, units, strict=True))
    )
    i = n_words // 2
    swapped = Word("fish", "speech", tuple(rng.randrange(500) for _ in units[i]), "x")
    corrupt = Utterance("corrupt", clean.words[:i] + (swapped,) + clean.words[i + 1 :])
    return Pair("bench", clean, corrupt, i)


def ours(model, task, n_layers: int, batch_size: int, device: str = "cpu", cells=None):
    """Our batched engine on the resid_pre grid [layers, pos] (``cells``: only these (layer,
    pos) pairs, a frame with those columns; the rest of the grid is NaN). On a local nnsight
    model each batch runs only the suffix after a cached prefix, from its lowest layer up."""
    T = len(task.corrupt_ids)
    sites = [(la, "resid_pre") for la in range(n_layers)]
    acts, _ = capture(model, task.clean_ids[None].to(device), sites, task.clean_readout)
    pairs = [(la, p) for la in range(n_layers) for p in range(T)]
    if cells is not None:
        pairs = sorted(zip(cells["layer"], cells["pos"], strict=True))
    grid = pd.DataFrame(
        [("resid_pre", la, p, p, p) for la, p in pairs],
        columns=["component", "layer", "position", "clean_position", "corrupt_position"],
    )
    run = keep_run(model, task.corrupt_ids, remote=False)
    out = torch.full((n_layers, T), float("nan"))
    for start in range(0, len(grid), batch_size):
        chunk = grid.iloc[start : start + batch_size].reset_index(drop=True)
        values = torch.as_tensor(patch_batch(model, task, chunk, acts, False, run))
        layer, pos = (torch.tensor(chunk[c].to_numpy()) for c in ("layer", "position"))
        out[layer, pos] = values
    return out


def theirs(model, task) -> torch.Tensor:
    from transformer_lens.patching import get_act_patch_resid_pre

    _, cache = model.run_with_cache(task.clean_ids[None])
    readout: Readout = task.corrupt_readout

    def metric(logits):
        return metric_from_logits(logits, readout)[0]

    with torch.no_grad():
        return get_act_patch_resid_pre(model, task.corrupt_ids[None], cache, metric)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--words", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_tiny_model(tmp, "sims", "qwen2", n_layers=args.layers, d_model=args.d_model)
        model, layout = si.load(str(path), backend="tl")
    pair = make_pair(args.words)
    tasks, _ = build_tasks([pair], layout, model.tokenizer, metrics=["speech"])
    task = tasks[0]
    assert len(task.clean_ids) == len(task.corrupt_ids), "the bench needs equal lengths"
    L, T = args.layers, len(task.corrupt_ids)

    t0 = time.perf_counter()
    a = ours(model, task, L, args.batch_size)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = theirs(model, task)
    t_tl = time.perf_counter() - t0
    print(f"grid: {L} layers x {T} positions = {L * T} cells, d_model {args.d_model}")
    print(f"ours (batch {args.batch_size}): {t_ours:.2f} s")
    print(f"transformer_lens get_act_patch_resid_pre: {t_tl:.2f} s")
    print(f"speed ratio (TL / ours): {t_tl / t_ours:.1f}x")
    print(f"max abs difference of the patched metric: {(a - b.cpu()).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
