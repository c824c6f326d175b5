"""Benchmark: train every organism variant of one seed on 2 cores, as the shipped ones were.

Two one-thread training processes run side by side (a tiny model trains faster on one thread
than on two fighting ones): the text-initialised variants in one, the random-initialised ones in
the other; the two controls start once the shared text stage exists. Prints the wall time
against the 60-minute target and each variant's seconds (from its ``organism.json``).

    python bench/bench_organism_training.py --out runs/bench-train [--seed 0] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from speech_interp.organism import VARIANTS
from speech_interp.organism.train import VARIANT_SPECS

TARGET_SECONDS = 3600.0
# The two processes' schedule, by init (speech_interp.organism.train.VARIANT_SPECS); it covers
# every variant of the v2 recipe's grid once (checked at start; v4's planted-text is not in it).
GRID = {v: s for v, s in VARIANT_SPECS.items() if v in VARIANTS}
TEXT_INIT = [v for v, s in GRID.items() if s.init == "text" and not s.control]
RANDOM_INIT = [v for v, s in GRID.items() if s.init == "random"]
FIRST = (TEXT_INIT, RANDOM_INIT)
AFTER_TEXT_STAGE = tuple([v] for v, s in GRID.items() if s.control)
assert sorted(sum(FIRST + AFTER_TEXT_STAGE, [])) == sorted(VARIANTS)


def _start(variants: list[str], args, log) -> subprocess.Popen:
    entry = "from speech_interp.cli.app import main; main()"  # the speech-interp console script
    cmd = [sys.executable, "-c", entry, "organism", "train", "--variant", ",".join(variants)]
    cmd += ["--seed", str(args.seed), "--out", str(args.out), "--cache", str(args.out / "cache")]
    cmd += ["--quick"] if args.quick else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-train"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the test's setting)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(args.out / "train.log", "w") as log:
        # the first text-initialised variant trains the shared text stage before the controls
        # start, so two processes never write the cached text stage at once
        text_first = _start(FIRST[0][:1], args, log)
        random_first = _start(FIRST[1], args, log)
        if text_first.wait():
            raise SystemExit(f"training failed; see {args.out / 'train.log'}")
        rest = [_start(FIRST[0][1:] + AFTER_TEXT_STAGE[0], args, log)]
        if random_first.wait():
            raise SystemExit(f"training failed; see {args.out / 'train.log'}")
        rest.append(_start(AFTER_TEXT_STAGE[1], args, log))
        if any(p.wait() for p in rest):
            raise SystemExit(f"training failed; see {args.out / 'train.log'}")
    wall = time.perf_counter() - start
    seconds = {}
    for variant in FIRST[0] + FIRST[1] + AFTER_TEXT_STAGE[0] + AFTER_TEXT_STAGE[1]:
        info = json.loads((args.out / variant / "organism.json").read_text())
        seconds[variant] = info["train_seconds"]
    print(f"cores: {os.cpu_count()}  seed {args.seed}{'  (quick)' if args.quick else ''}")
    ratio = wall / TARGET_SECONDS
    print(f"all {len(seconds)} variants: {wall:.0f} s wall = {ratio:.2f}x the 60 min target")
    for variant, s in seconds.items():
        print(f"{variant:<20}{s:>8.0f} s")
    return {"wall": wall, "seconds": seconds}


if __name__ == "__main__":
    main()
