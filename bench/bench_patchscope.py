"""Benchmark: the identity patchscope with its cached prefix vs the whole prompt per read.

Both methods give the patchscope's logits for ``--sources`` source states at ``--layers``
streams (evenly spaced over 0..L, all L+1 by default):

(a) ours, :class:`speech_interp.lens.patchscope.PatchscopeLens`: the prompt prefix's keys and
    values computed once (``bind``, timed apart), then per stream one pass of the placeholder
    position alone through blocks l..L-1, batched over the sources;
(b) the naive way: per (source, stream) one forward of the whole identity prompt with a forward
    pre-hook on block l that puts the source at the placeholder (stream L: the source itself
    through the final norm and unembedding), then the logits at the placeholder.

The sources are the model's own residual states of a text sentence at the stream being read.
Prints each method's time (best of ``--repeats``, after one warm-up read), the ratio
(target: ours >= 5x faster) and the largest |logit difference| relative to the logits' scale.

    python bench/bench_patchscope.py [--model organism:smol] [--sources 16] [--layers 31]
                                     [--backend tl] [--repeats 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

SENTENCE = (
    "the old river runs past the small garden where a happy dog sees the red bird near the "
    "big tree and the young cat sleeps under the blue house every morning in spring"
)
TARGET = 5.0


def _sources(model, n: int):
    """(streams, n, d) residual states of the first ``n`` tokens of a text sentence."""
    from speech_interp.core.residuals import residual_stacks

    ids = model.tokenizer(SENTENCE, add_special_tokens=False, return_tensors="pt").input_ids[0]
    ids = ids.repeat(-(-n // ids.numel()))[:n]
    return residual_stacks(model, [ids])[0].float()


def ours(lens, streams, sources):
    with torch.no_grad():
        return {layer: lens.logits_at(layer, sources[layer]) for layer in streams}


def naive(lens, hf, streams, sources):
    """Whole prompt per (source, stream), the source patched in by a forward pre-hook."""
    from speech_interp.hooks import submodule

    blocks, ids = submodule(hf, "blocks"), lens.prompt_ids[None]
    out = {}
    for layer in streams:
        rows = []
        for h in sources[layer]:
            if layer == lens.n_layers:
                rows.append(lens.logits_at(layer, h[None])[0])
                continue

            def put(module, args, kwargs, h=h):
                x = args[0].clone()
                x[:, -1] = h.to(x.dtype)
                return (x, *args[1:]), kwargs

            handle = blocks[layer].register_forward_pre_hook(put, with_kwargs=True)
            try:
                with torch.no_grad():
                    rows.append(hf(ids).logits[0, -1].float())
            finally:
                handle.remove()
        out[layer] = torch.stack(rows)
    return out


def _best(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="organism:smol")
    parser.add_argument("--family", default=None, help="e.g. text for smollm2")
    parser.add_argument("--backend", default="tl", choices=("tl", "nnsight"))
    parser.add_argument("--sources", type=int, default=16)
    parser.add_argument("--layers", type=int, default=None, help="streams read (default all)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import speech_interp as si
    from speech_interp.lens.patchscope import PatchscopeLens
    from speech_interp.models import hf_model

    family = args.family or ("text" if args.model == "smollm2" else None)
    model, _ = si.load(args.model, backend=args.backend, family=family)
    hf = hf_model(model)
    start = time.perf_counter()
    lens = PatchscopeLens(model)
    bind_s = time.perf_counter() - start
    L = lens.n_layers
    n_streams = L + 1 if args.layers is None else min(args.layers, L + 1)
    streams = sorted({int(round(x)) for x in np.linspace(0, L, n_streams)})
    sources = _sources(model, args.sources)
    ours(lens, streams[:1], sources[:, :1])  # warm-up: weights paged in
    naive(lens, hf, streams[:1], sources[:, :1])
    t_ours, got = _best(lambda: ours(lens, streams, sources), args.repeats)
    t_naive, ref = _best(lambda: naive(lens, hf, streams, sources), args.repeats)
    diff = max(float((got[s] - ref[s]).abs().max()) for s in streams)
    scale = max(float(ref[s].abs().max()) for s in streams)
    reads = len(streams) * args.sources
    print(f"model {args.model} ({args.backend}), {L} layers; {args.sources} sources x "
          f"{len(streams)} streams = {reads} reads; {args.threads} torch threads")  # fmt: skip
    print(f"prefix cache (bind, once per model): {bind_s:.3f} s "
          f"({lens.placeholder_position} prefix tokens)")  # fmt: skip
    print(f"ours (cached prefix, placeholder only, batched): {t_ours:.3f} s")
    print(f"naive (whole prompt per source and stream, hook): {t_naive:.3f} s")
    ratio = t_naive / t_ours
    verdict = "meets" if ratio >= TARGET else "misses"
    print(f"speed ratio (naive / ours): {ratio:.1f}x ({verdict} the {TARGET:.0f}x target)")
    print(f"max |logit difference|: {diff:.3g} = {diff / scale:.3g} of the logits' scale "
          f"{scale:.3g}")  # fmt: skip


if __name__ == "__main__":
    main()
