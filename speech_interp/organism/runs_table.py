"""The recipe table: every organism run trained under a directory, failures included.

One row per saved run (a directory holding ``organism.json``, found at any depth): its world,
variant and seed, the recipe settings that differ from :class:`~speech_interp.organism.train.
OrganismConfig`'s defaults, parameters, training seconds, the recognition gate
(:mod:`speech_interp.organism.hearing`) and spoken knowledge with their CIs, and the held-out
losses. Written by ``speech-interp organism runs``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from .evaluate import SPOKEN_KNOWLEDGE


def run_row(run_dir: Path) -> dict:
    """The table row of one saved run (its ``organism.json``)."""
    from .train import OrganismConfig

    info = json.loads((run_dir / "organism.json").read_text())
    default = asdict(OrganismConfig())
    config = info.get("config", {})
    changed = {k: v for k, v in config.items() if k in default and v != default[k] and k != "world"}
    gates = [g for g in info.get("hearing", []) if (g["split"], g["voice"]) == ("eval", "all")]
    gate = gates[0] if gates else None
    probes = {(p["probe"], p["voices"]): p for p in info.get("probes", [])}
    know = probes.get((SPOKEN_KNOWLEDGE, "eval"))
    seen = probes.get(("fact_noun_spoken/seen_in_speech", "eval"))
    loss = {(r["modality"], r["voices"]): r["loss"] for r in info.get("heldout_loss", [])}
    t = info.get("timings", {})
    return {
        "run": str(run_dir), "world": config.get("world", "v2"), "variant": info["variant"],
        "seed": info["seed"], "recipe": ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
        or "default", "params": info.get("n_params"),
        "text_s": t.get("text_stage_s"), "mixed_s": t.get("mixed_stage_s"),
        "gate": None if gate is None else (gate["win_rate"], gate["ci_low"], gate["ci_high"]),
        "hears": None if gate is None else bool(gate["hears"]),
        "spoken_knowledge": None if know is None else (know["value"], know["ci_low"],
                                                       know["ci_high"], know["chance"]),
        "facts_seen_in_speech": None if seen is None else seen["value"],
        "loss_text": loss.get(("text", "eval")), "loss_speech": loss.get(("speech", "eval")),
    }  # fmt: skip


def runs_table(root: Path) -> pd.DataFrame:
    """Every ``organism train`` run under ``root``, sorted by world, variant, recipe and seed
    (``train-smol``'s rows checkpoints are not these runs: :func:`rows_runs` lists them)."""
    from speech_interp.sources import is_rows_dir

    dirs = sorted(p.parent for p in Path(root).rglob("organism.json"))
    dirs = [d for d in dirs if not is_rows_dir(d)]
    if not dirs:
        raise ValueError(f"no trained organism (organism.json) under {root}")
    rows = [run_row(d) for d in dirs]
    return pd.DataFrame(rows).sort_values(["world", "variant", "recipe", "seed"], kind="stable")


def rows_runs(root: Path) -> list[Path]:
    """The ``train-smol`` runs (rows checkpoints) under ``root``."""
    from speech_interp.sources import is_rows_dir

    return sorted(p.parent for p in Path(root).rglob("organism.json") if is_rows_dir(p.parent))


def _triple(t) -> str:
    return "n/a" if t is None else f"{t[0]:.2f} [{t[1]:.2f}, {t[2]:.2f}]"


def runs_markdown(table: pd.DataFrame) -> str:
    """The table as markdown (seconds rounded; CIs in brackets)."""
    lines = [
        "| world | variant | seed | recipe (changed settings) | params | text + mixed s | "
        "gate [CI] | hears | spoken knowledge [CI] (chance) | facts seen in speech | "
        "loss text / speech |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        sk = r.spoken_knowledge
        know = "n/a" if sk is None else f"{_triple(sk)} ({sk[3]:.2f})"
        text_s = 0 if pd.isna(r.text_s) else r.text_s  # a random init has no text stage
        secs = f"{text_s:.0f} + {r.mixed_s:.0f}"
        seen = "n/a" if r.facts_seen_in_speech is None else f"{r.facts_seen_in_speech:.2f}"
        lines.append(
            f"| {r.world} | {r.variant} | {r.seed} | {r.recipe} | {r.params:,} | {secs} | "
            f"{_triple(r.gate)} | {'yes' if r.hears else 'no'} | {know} | {seen} | "
            f"{r.loss_text:.2f} / {r.loss_speech:.2f} |"
        )
    return "\n".join(lines) + "\n"


__all__ = ["run_row", "runs_markdown", "runs_table"]
