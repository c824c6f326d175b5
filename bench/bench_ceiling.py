"""Benchmark: what the text ceiling adds to a lens run of the same utterances.

Runs the lens (:func:`speech_interp.run_lens`) on the first ``--limit`` held-out utterances of
the shipped evaluation set, then the text ceiling (:func:`speech_interp.lens.ceiling.
text_ceiling`) with the same lens on the same utterances written as text, and prints
(lens + ceiling) / lens (target: <= 1.5x) for each ``--model``. Best of ``--repeats`` runs each,
after one warm-up.

    python bench/bench_ceiling.py [--models organism,organism:smol] [--limit 20] [--repeats 1]
"""

from __future__ import annotations

import argparse
import functools
import time

TARGET = 1.5


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    import torch

    import speech_interp as si
    from speech_interp.data import select_sentences, select_split
    from speech_interp.lens import as_lens
    from speech_interp.lens.ceiling import text_ceiling
    from speech_interp.organism import SHIPPED_DATA

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="organism,organism:smol")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, utts = si.read_utterances(SHIPPED_DATA)
    utts = select_sentences(select_split(utts, "eval"), "heldout")[: args.limit]
    print(f"{len(utts)} held-out utterances, {args.threads} torch threads, logit lens")
    for name in args.models.split(","):
        model, layout = si.load(name, backend="tl")
        lens = as_lens("logit", model)
        run = functools.partial(si.run_lens, model, layout, utts, lens=lens, progress=False)
        ceiling = functools.partial(text_ceiling, model, layout, lens, utts)
        lens_s = best_seconds(run, args.repeats)
        ceiling_s = best_seconds(ceiling, args.repeats)
        ratio = (lens_s + ceiling_s) / lens_s
        print(f"{name}: lens {lens_s:.2f} s, text ceiling {ceiling_s:.2f} s; (lens + ceiling) / "
              f"lens = {ratio:.2f}x (target <= {TARGET}x)")  # fmt: skip


if __name__ == "__main__":
    main()
