"""What every demo section runs a model with: the job settings (:class:`DemoJob`), the data it
reads (:func:`demo_data`), per-stage seconds (:class:`Stopwatch`), the causal verdict and fact
recall of one model, and the worker processes the models run in (:func:`run_outcomes`).

Shared by the organism-v2 run (:mod:`speech_interp.organism.demo`) and the organism-v3 section
(:mod:`speech_interp.organism.smol_demo`); it imports neither.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from speech_interp.artifacts import write_csv


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
    model,
    layout,
    utterances,
    result,
    variant,
    seed,
    max_words,
    out,
    clock=None,
    probe=False,
    lens=None,
) -> dict:
    """Ablation in every demo band, then the verdict (decodable x causal) per band. With
    ``probe``, word-identity probe directions are ablated too
    (:func:`speech_interp.causal.ablation.ablate_bands`); the verdict rule does not read them.
    ``lens``: the lens that read ``result``; the ablated text direction is the one it reads
    (:meth:`~speech_interp.lens.lenses.Lens.text_direction`; the logit lens's by default)."""
    from speech_interp.causal import ablate_bands, verdicts
    from speech_interp.core.residuals import n_layers
    from speech_interp.plotting import plot_ablation_bands

    clock = clock or Stopwatch()
    bands = demo_bands(n_layers(model))
    with clock("ablation"):
        ablation = ablate_bands(model, layout, utterances, bands, n_random=20, seed=seed,
                                probe=probe, max_words=max_words, model_id=variant,
                                progress=False, lens=lens)  # fmt: skip
    with clock("verdict"):
        content = verdicts(result.words, ablation, bands=bands, seed=seed)
        if lens is not None:
            from speech_interp.causal.ablation import text_direction_source

            content["text_direction"] = text_direction_source(lens)
    with clock("outputs"):
        write_csv(ablation, out / f"ablation_{variant}.csv")
        title = f"{variant}: text-direction ablation vs random directions"
        figure = out / f"ablation_{variant}.png"
        plot_ablation_bands(ablation, figure, verdicts=content, title=title)
    return content


def knowledge_row(name: str, model, layout, facts, seed: int, world=None) -> dict:
    """Fact recall of one model on the data's fact sentences: spoken knowledge (facts only seen
    in text, recalled from a spoken entity), the same for facts seen in speech, and from text
    (chance from ``world``'s categories; the v2 world by default)."""
    from speech_interp.models import hf_model
    from speech_interp.organism.evaluate import fact_recall
    from speech_interp.organism.world import V2

    rows = fact_recall(hf_model(model), model.tokenizer, layout, facts, "eval", seed, world or V2)
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


def default_workers(n_models: int) -> int:
    """One worker process per core, at most one per model and at most 8."""
    return max(1, min(os.cpu_count() or 1, n_models, 8))


def worker_plan(workers: int | None, n_models: int) -> tuple[int, int]:
    """(worker processes, torch threads each) of a demo run: ``workers`` (None: one per core,
    :func:`default_workers`) and the cores shared among them; one worker keeps this process's
    threads."""
    import torch

    workers = default_workers(n_models) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        return 1, torch.get_num_threads()
    return workers, max(1, (os.cpu_count() or 1) // workers)


def _worker_threads(threads: int) -> None:
    """Start of a worker process: its share of the cores as torch threads."""
    import torch

    torch.set_num_threads(threads)


def run_outcomes(
    outcome, variants, causal_models, job: DemoJob, workers: int, threads: int, bar, cost=None
) -> dict[str, dict]:
    """``outcome(variant, job, causal)`` of every variant (a picklable function), in
    ``workers`` processes with ``threads`` torch threads each (1 worker: in this process, its
    threads as they are); in the order of ``variants``.

    ``cost`` (variant -> seconds measured for it on one core, :func:`expected_cost`) drives
    ``bar``: its total is their sum and a finished model advances it by its own cost, so the bar's
    rate and remaining time are in measured seconds. The costliest models go first, so the
    processes finish close together."""
    cost = cost or {v: 1.0 for v in variants}
    order = sorted(variants, key=lambda v: (-cost[v], v not in causal_models))
    outcomes: dict[str, dict] = {}
    if workers == 1:
        for v in order:
            bar.set_postfix_str(v)
            outcomes[v] = outcome(v, job, v in causal_models)
            bar.update(cost[v])
        return {v: outcomes[v] for v in variants}
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_threads, initargs=(threads,)
    ) as pool:
        futures = {pool.submit(outcome, v, job, v in causal_models): v for v in order}
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
            bar.set_postfix_str(f"done: {futures[future]}")
            bar.update(cost[futures[future]])
    return {v: outcomes[v] for v in variants}
