"""Read every trained run of a directory the way the demo reads the shipped v4 models.

``speech-interp organism read-runs --root runs/v4/small-40-R1`` takes each model directory under
``root`` (``organism train``'s ``full``, ``full-seed1``, ``random-init-seed2`` ...; ``train-smol``'s
rows checkpoints too) through :func:`~speech_interp.organism.v4_demo.v4_outcome` (the gate, the
lens chosen on text, transcription beside its ceiling, spoken knowledge), then compares the knobs
seed by seed and **pooled over seeds** (per word, ``full``'s excess minus the knob's averaged over
the seeds, bootstrap over word types: :func:`~speech_interp.lens.metrics.pooled_excess_difference`)
and correlates transcription strength with spoken knowledge over every run. This is how models
that do not ship (the knob cells at seeds 1-2) are read with the demo's own code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from speech_interp.artifacts import write_csv, write_text
from speech_interp.organism.jobs import DemoJob, run_outcomes
from speech_interp.organism.report import _fmt, knob_rows
from speech_interp.organism.v4_demo import strength_knowledge, v4_json, v4_markdown, v4_outcome
from speech_interp.sources import ROWS_INFO

# knob variant of organism.train.VARIANTS or organism.smol.SMOL_VARIANTS -> the model it lowers
KNOB_OF = {
    "random-init": "full", "speech-only": "full", "no-interleave": "full",
    "smol-lora-random-init": "smol-lora", "smol-lora-speech-only": "smol-lora",
    "smol-random-init": "smol", "smol-speech-only": "smol", "smol-separate": "smol",
}  # fmt: skip
SEEDS = (0, 1, 2)


def run_dirs(root: Path) -> list[Path]:
    """The model directories directly under ``root`` (each with its ``organism.json``), sorted."""
    dirs = sorted(d for d in root.iterdir() if (d / ROWS_INFO).is_file())
    if not dirs:
        raise FileNotFoundError(f"no trained model (a directory with {ROWS_INFO}) under {root}")
    return dirs


def dir_name(variant: str, seed: int) -> str:
    """A run's directory name, as ``organism train`` and ``train-smol`` write it."""
    from speech_interp.organism import shipped_name

    return shipped_name(variant, seed)


def pooled_knobs(words: dict, rows: dict, seed: int, seeds=SEEDS) -> list[dict]:
    """Per knob: the difference pooled over the ``seeds`` whose pair of runs exists."""
    from speech_interp.lens.metrics import pooled_excess_difference

    out = []
    for knob, full in KNOB_OF.items():
        pairs, used = [], []
        for s in seeds:
            a, b = dir_name(full, s), dir_name(knob, s)
            if a in words and b in words:
                la, lb = rows[a]["transcription"]["layer"], rows[b]["transcription"]["layer"]
                pairs.append((words[a], words[b], la, lb))
                used.append(s)
        if pairs:
            mean, lo, hi, n = pooled_excess_difference(pairs, seed=seed)
            out.append({"full": full, "knob": knob, "seeds": used, "difference": [mean, lo, hi],
                        "n": n, "lowers": bool(lo > 0)})  # fmt: skip
    return out


def read_runs(root: Path, job: DemoJob, *, workers: int = 1, threads: int = 1, causal=(),
              bar=None) -> dict:  # fmt: skip
    """Outcomes of every run under ``root`` (keyed by directory name), the knobs per seed and
    pooled, and the strength-knowledge correlation; writes ``runs_lens.csv``,
    ``runs_hearing.csv``, ``runs.json`` and ``runs.md`` into ``job.out``."""
    from tqdm.auto import tqdm

    dirs = {d.name: str(d) for d in run_dirs(root)}
    bar = bar or tqdm(disable=True)
    by_path = run_outcomes(v4_outcome, list(dirs.values()), {dirs[c] for c in causal if c in dirs},
                           job, workers, threads, bar)  # fmt: skip
    outcomes = {name: by_path[path] for name, path in dirs.items()}
    words = {v: o["words"] for v, o in outcomes.items()}
    rows = {v: o["row"] for v, o in outcomes.items()}
    knobs = []
    for knob, full in KNOB_OF.items():
        knobs += knob_rows(words, rows, job.seed, name=dir_name, seeds=SEEDS, knobs=(knob,),
                           full=full)  # fmt: skip
    section = {
        "models": list(outcomes), "outcomes": outcomes, "knobs": knobs,
        "pooled_knobs": pooled_knobs(words, rows, job.seed),
        "correlation": strength_knowledge(outcomes, job.seed),
    }  # fmt: skip
    job.out.mkdir(parents=True, exist_ok=True)
    frames = [o["summary"] for o in outcomes.values()]
    frames += [c for o in outcomes.values() for c in o["ceilings"].values()]
    write_csv(pd.concat(frames, ignore_index=True), job.out / "runs_lens.csv")
    gates = pd.concat([o["gate"].assign(model=v) for v, o in outcomes.items()], ignore_index=True)
    write_csv(gates, job.out / "runs_hearing.csv")
    data = v4_json(section) | {"root": str(root), "pooled_knobs": section["pooled_knobs"]}
    write_text(job.out / "runs.json", json.dumps(data, indent=2) + "\n")
    write_text(job.out / "runs.md", "\n".join(runs_markdown(section, root)) + "\n")
    return section


def runs_markdown(section: dict, root: Path) -> list[str]:
    """The demo's v4 tables for the runs under ``root``, then the knobs pooled over seeds."""
    intro = [
        f"# Trained runs under `{root}`",
        "",
        "Read as the demo reads the shipped v4 models (`speech-interp organism read-runs`):",
        "held-out sentences of the world's evaluation set in training voices, spoken content",
        "words, top-5 over the text vocabulary, 95% CIs resampling word types.",
    ]
    lines = v4_markdown(section, intro)
    pooled = section["pooled_knobs"]
    if pooled:
        lines += ["", "Knobs pooled over seeds (per word, the model's excess minus the knob's "
                  "averaged over the seeds, bootstrap over word types; a knob lowers the excess "
                  "when the CI lies above 0):", "",
                  "| model | knob | seeds | model - knob [CI] | n | lowers |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for k in pooled:
            seeds = ", ".join(map(str, k["seeds"]))
            lines.append(f"| {k['full']} | {k['knob']} | {seeds} | {_fmt(k['difference'])} | "
                         f"{k['n']} | {'yes' if k['lowers'] else 'no'} |")  # fmt: skip
    return lines


__all__ = ["KNOB_OF", "SEEDS", "dir_name", "pooled_knobs", "read_runs", "run_dirs",
           "runs_markdown"]  # fmt: skip
