"""Benchmark: the README's main job, ``speech-interp demo``, as a newcomer meets it.

Runs the demo with its defaults twice, each in a new Python process: first with an empty cache
(``SPEECH_INTERP_CACHE`` pointed at a new empty directory: nothing built by an earlier run is
there), then again with the cache that first run left. Prints each wall time as ratios to the
300 s target (5 minutes on 2 cores, first run) and to the 240 s target of a cached run, the
size of the cache the first run left, and the seconds and share of each stage that the demo
records in ``run.json`` (summed over its worker processes, so they add up to more than the wall
time).

    python bench/bench_demo.py [--out out/bench-demo] [--cases first,cached] [-- demo options]
    python bench/bench_demo.py -- --all
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"first": 300.0, "cached": 240.0}


def dir_megabytes(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def run_case(out: Path, cache: Path, extra: list[str]) -> tuple[float, dict]:
    """(wall seconds, run.json) of one demo in a fresh process."""
    entry = "from speech_interp.cli.app import main; main()"  # the speech-interp console script
    cmd = [sys.executable, "-c", entry, "demo", "--out", str(out), *extra]
    env = os.environ | {"SPEECH_INTERP_CACHE": str(cache)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start, json.loads((out / "run.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench-demo"))
    parser.add_argument("--cases", default="first,cached", help="first | cached | both")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    cases = [c for c in args.cases.split(",") if c]
    print(f"cores: {os.cpu_count()}  command: speech-interp demo {' '.join(extra)}")
    with tempfile.TemporaryDirectory(prefix="speech-interp-cache-") as tmp:
        cache = Path(tmp)
        for case in cases:
            if case not in TARGETS:
                raise SystemExit(f"unknown case {case!r} (first | cached)")
            wall, run = run_case(args.out / case, cache, extra)
            target = TARGETS[case]
            print(f"\n{case} run: {wall:.1f} s = {wall / target:.2f}x the {target:.0f} s target "
                  f"(in run_demo {run['wall_seconds']:.1f} s, start-up "
                  f"{wall - run['wall_seconds']:.1f} s); cache after it: "
                  f"{dir_megabytes(cache):.0f} MB")  # fmt: skip
            print(f"workers: {run['workers']} x {run['torch_threads_per_worker']} torch threads")
            print(f"{'stage':<12}{'seconds':>10}{'share':>8}")
            for stage, t in sorted(run["timings"].items(), key=lambda kv: -kv[1]["seconds"]):
                print(f"{stage:<12}{t['seconds']:>10.1f}{t['share']:>8.1%}")
            slowest = sorted(run["model_seconds"].items(), key=lambda kv: -kv[1])
            print("model seconds:", ", ".join(f"{m} {s:.0f}" for m, s in slowest))


if __name__ == "__main__":
    main()
