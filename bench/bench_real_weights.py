"""Benchmark: every routine on real pretrained weights, a SIMS checkpoint made from SmolLM2-135M.

The checkpoint is ``speech-interp make-checkpoint --text-lm smollm2 --family sims`` (built in a
temporary directory unless ``--checkpoint`` names one); the data are the causal test sentences
(``speech_interp.testing.causal_utterances``: SIMS units, 6 spoken sentences, 2 voices).

Anchor, measured in the same run on the same utterances: one plain HF forward with
``output_hidden_states`` plus the final norm, the unembedding and a top-10 at every layer and
position (the compute floor of any logit lens; the anchor of ``bench_lens.py``). Every routine's
time is printed as a ratio to it, and its peak resident-memory growth (sampled every 2 ms; the
model's weights are loaded before) as a ratio to the anchor's. Target (issue): the lens at
<= 1.5 x the anchor.

    python bench/bench_real_weights.py [--checkpoint DIR] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks' pieces
from bench_lens import PeakRSS  # noqa: E402


def anchor(hf, prompts) -> None:
    from speech_interp.lens.unembed import Unembedding

    un = Unembedding.from_model(hf)
    with torch.no_grad():
        _anchor_pass(hf, un, prompts)


def _anchor_pass(hf, un, prompts) -> None:
    for prompt in prompts:
        hidden = hf(prompt.input_ids[None], output_hidden_states=True).hidden_states
        for h in hidden:
            un.logits(un.normed(h[0])).topk(10, dim=-1)


def routines(models, layout, utterances, pairs, tmp: Path, quick: bool) -> dict:
    """name -> (backend, callable, items it processes)."""
    import speech_interp as si
    from speech_interp.checkpoints import convert_checkpoint
    from speech_interp.lens import TunedLens
    from speech_interp.lens.grid import lens_grid

    tl, nn = models["tl"], models["nnsight"]
    prompts = [u.to_prompt(layout, tl.tokenizer) for u in utterances]
    tuned = TunedLens.from_model(nn)  # identity-initialised: the cost of any fitted tuned lens
    band = "14-15"
    n_random = 4 if quick else 20
    out = {
        "residuals": ("tl", lambda: [si.residual_stack(tl, p.input_ids[None]) for p in prompts]),
        "residuals ": (
            "nnsight",
            lambda: [si.residual_stack(nn, p.input_ids[None]) for p in prompts],
        ),
        "lens (logit)": ("tl", lambda: si.run_lens(tl, layout, utterances, progress=False)),
        "lens (logit) ": ("nnsight", lambda: si.run_lens(nn, layout, utterances, progress=False)),
        "lens (tuned)": (
            "nnsight",
            lambda: si.run_lens(nn, layout, utterances, lens=tuned, progress=False),
        ),
        "view grids": (
            "nnsight",
            lambda: [lens_grid(nn, layout, p, torch.full_like(p.input_ids, -1)) for p in prompts],
        ),
        "patch (exact, blocks 14-15)": (
            "nnsight",
            lambda: si.patch_sweep(nn, layout, pairs, layers=[14, 15], progress=False),
        ),
        "attribution": ("nnsight", lambda: si.attribution_sweep(nn, layout, pairs, progress=False)),
        f"ablate (streams {band})": (
            "tl",
            lambda: si.ablate(tl, layout, utterances, band=band, n_random=n_random, progress=False),
        ),
        "substitute (stream 14)": (
            "tl",
            lambda: si.substitute(tl, layout, pairs, band="14-14", n_random=2, progress=False),
        ),
        "convert": ("-", lambda: convert_checkpoint(str(models["dir"]), tmp / f"c{time.time()}")),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="an existing SIMS-smol dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 sentences (for the test suite)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    import speech_interp as si
    from speech_interp.data import make_pairs
    from speech_interp.extend import make_checkpoint
    from speech_interp.testing import causal_utterances

    tmp = Path(tempfile.mkdtemp(prefix="bench-real-"))
    ckpt = args.checkpoint or make_checkpoint("smollm2", "sims", tmp / "sims")
    models = {"dir": ckpt}
    for backend in ("tl", "nnsight"):
        models[backend], layout = si.load(str(ckpt), backend=backend)
    utterances = causal_utterances()[: 2 if args.quick else None]
    pairs = make_pairs(utterances, seed=0, max_pairs=2 if args.quick else 6)
    n_tokens = sum(len(u.to_prompt(layout, models["tl"].tokenizer).input_ids) for u in utterances)
    hf = si.hf_model(models["nnsight"])
    print(
        f"SIMS checkpoint from SmolLM2-135M ({ckpt}): 30 layers, vocab {hf.config.vocab_size}; "
        f"{len(utterances)} utterances, {n_tokens} tokens, {len(pairs)} pairs; "
        f"{args.threads} threads, fp32"
    )
    prompts = [u.to_prompt(layout, models["tl"].tokenizer) for u in utterances]

    def measure(fn) -> tuple[float, float]:
        fn()  # warm-up: one-time set-up and paged-in weights are not charged
        start = time.perf_counter()
        with PeakRSS() as peak:
            fn()
        return time.perf_counter() - start, peak.growth_mb

    base_s, base_mb = measure(lambda: anchor(hf, prompts))
    print(f"anchor (forward + per-layer unembed + top-10): {base_s:.2f} s, {base_mb:.0f} MB")
    head = ("routine", "backend", "seconds", "x anchor", "MB", "x anchor")
    print("{:32s} {:8s} {:>8s} {:>9s} {:>7s} {:>9s}".format(*head))
    for name, (backend, fn) in routines(models, layout, utterances, pairs, tmp, args.quick).items():
        seconds, mb = measure(fn)
        print(
            f"{name.strip():32s} {backend:8s} {seconds:8.2f} {seconds / base_s:8.2f}x "
            f"{mb:7.0f} {mb / max(base_mb, 1.0):8.2f}x"
        )


if __name__ == "__main__":
    main()
