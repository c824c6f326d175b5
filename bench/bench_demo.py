"""Benchmark: the README's main job, ``speech-interp demo``, in a fresh process.

Runs the demo with its defaults (all shipped variants, every held-out sentence, the causal
verdicts) in a new Python process, then prints the wall time as ratios to the target (5 minutes
on 2 cores) and to the cap (10 minutes, the most the full demo may take once organism v3 makes
it pass the target; ``--quick`` keeps the target), and the seconds and share of each stage that
the demo records in ``run.json`` (summed over the demo's worker processes, so they add up to more
than the wall time).

    python bench/bench_demo.py [--out out/bench-demo] [--limit N] [-- extra demo options]
    python bench/bench_demo.py -- --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 300.0
CAP_SECONDS = 600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench-demo"))
    parser.add_argument("--limit", type=int, default=0, help="utterances (0 = all, the default)")
    args, extra = parser.parse_known_args()
    entry = "from speech_interp.cli.app import main; main()"  # the speech-interp console script
    cmd = [sys.executable, "-c", entry, "demo", "--out", str(args.out)]
    cmd += ["--limit", str(args.limit), *[a for a in extra if a != "--"]]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    run = json.loads((args.out / "run.json").read_text())
    print(f"cores: {os.cpu_count()}  command: speech-interp {' '.join(cmd[3:])}")
    print(f"workers: {run['workers']} processes x {run['torch_threads_per_worker']} torch threads")
    print(f"demo wall time: {wall:.1f} s = {wall / TARGET_SECONDS:.2f}x the 300 s target, "
          f"{wall / CAP_SECONDS:.2f}x the 600 s cap")  # fmt: skip
    print(f"  in run_demo: {run['wall_seconds']:.1f} s; before it (start-up): "
          f"{wall - run['wall_seconds']:.1f} s")  # fmt: skip
    print("stage seconds summed over the worker processes:")
    print(f"{'stage':<12}{'seconds':>10}{'share':>8}")
    for stage, t in sorted(run["timings"].items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"{stage:<12}{t['seconds']:>10.1f}{t['share']:>8.1%}")


if __name__ == "__main__":
    main()
