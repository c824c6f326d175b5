"""The demo's organism-v4 section: the small world's models, read with the lens that sees words.

Every v4 model (:data:`~speech_interp.hooks.organism.V4_MODELS`) is read on its world's shipped
evaluation set (held-out sentences in training voices): first the **recognition gate**
(:mod:`speech_interp.organism.hearing`: does it hear its content words?), then the lens chosen by
:data:`~speech_interp.lens.choice.CHOICE_RULE` among the logit lens and a current-word lens
fitted on the world's own written sentences (decided on text, before any speech is read), with
both lenses' text ceilings; transcription with that lens (after uniqueness, over the control
and over pre-onset, as a share of the ceiling), the next word, spoken knowledge, and on
:data:`V4_CAUSAL` the ablation verdict with the chosen lens's decodability. The knobs are
compared seed by seed (paired over word types) and transcription strength is correlated with
spoken knowledge across the models.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from speech_interp.artifacts import write_csv, write_text
from speech_interp.hooks.organism import V4_CAUSAL, V4_KNOBS, V4_MODELS, V4_SEEDS, V4_WORLD
from speech_interp.organism.jobs import (
    DemoJob,
    Stopwatch,
    causal_verdict,
    demo_data,
    knowledge_row,
    run_outcomes,
)
from speech_interp.organism.report import _fmt, knob_rows, report_rows

# The current lens's fit and validation sentences in the demo, set by its time (the CLI fits on
# 1,200 + 300): the small world's 40 content words each occur dozens of times in 400 sentences.
FIT_SENTENCES = (400, 100)


def model_spec(variant: str) -> str:
    """The model spec of ``variant``: a directory (a trained run, ``organism train``'s output) as
    it is, else the shipped organism model of that name."""
    return variant if Path(variant).is_dir() else f"organism:{variant}"


def v4_outcome(variant: str, job: DemoJob, causal: bool) -> dict:
    """Everything the v4 section computes on one model (runs in a worker process): ``variant``
    is a shipped v4 model's name or a trained run's directory (:func:`model_spec`)."""
    from speech_interp.lens import build_lens, excess_over_control, run_lens
    from speech_interp.lens.choice import choose_lens
    from speech_interp.models import hf_model, load

    from .evalset import lens_fit_sentences
    from .hearing import recognition_gate
    from .train import shipped_units
    from .world import organism_world

    spec = model_spec(variant)
    world = organism_world(spec)
    utterances, _, facts = demo_data(job.data, job.split, job.limit)
    clock = Stopwatch()
    with clock("load"):
        model, layout = load(spec, backend=job.backend)
    with clock("gate"):
        _, gate = recognition_gate(hf_model(model), model.tokenizer, layout, utterances,
                                   shipped_units(), world, job.seed)  # fmt: skip
    with clock("lens choice"):
        analysed = {tuple(w.word for w in u.words) for u in utterances}
        fit, val = lens_fit_sentences(world, analysed, *FIT_SENTENCES, job.seed)
        source = f"{world.name} grammar sentences"
        builders = {
            "logit": lambda: build_lens("logit", model, layout),
            "current": lambda: build_lens(
                "current", model, layout, texts=(fit, val, source), progress=False
            ),
        }
        chosen, lens, _, ceilings, choice = choose_lens(
            model, layout, utterances, builders, model_id=variant, backend=job.backend,
            seed=job.seed,
        )  # fmt: skip
    with clock("lens"):
        result = run_lens(model, layout, utterances, lens=lens, seed=job.seed, model_id=variant,
                          progress=False)  # fmt: skip
        excess = excess_over_control(result.words, k=5, seed=job.seed)
        row = report_rows(variant, result, job.seed, excess)
    outcome = {
        "variant": variant, "gate": gate, "chosen": chosen, "choice": choice,
        "ceilings": ceilings, "summary": result.summary, "words": result.words, "row": row,
        "excess": excess, "knowledge": None, "verdict": None,
    }  # fmt: skip
    if facts:
        with clock("knowledge"):
            outcome["knowledge"] = knowledge_row(variant, model, layout, facts, job.seed, world)
    if causal:
        outcome["verdict"] = causal_verdict(
            model, layout, utterances, result, variant, job.seed, job.max_words, job.out,
            clock, job.probe, lens,
        )  # fmt: skip
    outcome["seconds"] = clock.seconds
    return outcome


def v4_knobs(outcomes: dict[str, dict], seed: int) -> list[dict]:
    """Per seed: ``v4-full``'s transcription excess minus each knob's (each at its own best
    layer), paired bootstrap over word types (:func:`~speech_interp.organism.report.knob_rows`
    with v4's names)."""
    words = {v: o["words"] for v, o in outcomes.items()}
    rows = {v: o["row"] for v, o in outcomes.items()}
    return knob_rows(words, rows, seed, name=v4_name, seeds=V4_SEEDS, knobs=V4_KNOBS)


def v4_name(variant: str, seed: int = 0) -> str:
    """The shipped name of a v4 variant at a training seed."""
    return f"v4-{variant}" if seed == 0 else f"v4-{variant}-seed{seed}"


def strength_knowledge(outcomes: dict[str, dict], seed: int) -> dict:
    """Pearson r, across the models, between transcription strength (the best-layer excess over
    the control) and spoken knowledge (recall of text-only facts from a spoken entity), with a
    bootstrap CI resampling models."""
    from speech_interp.evaluation.protocol import strength_correlation

    from .evaluate import SPOKEN_KNOWLEDGE

    points = []
    for v, o in outcomes.items():
        k = (o["knowledge"] or {}).get(SPOKEN_KNOWLEDGE)
        if k is not None:
            strength = o["row"]["transcription"]["excess"][0]
            points.append({"model": v, "transcription_strength": strength,
                           "score": k["value"][0]})  # fmt: skip
    return strength_correlation(pd.DataFrame(points), seed=seed) | {"points": points}


def run_v4(
    job: DemoJob,
    *,
    variants=V4_MODELS,
    causal_models=V4_CAUSAL,
    workers: int = 1,
    threads: int = 1,
    bar=None,
) -> dict:
    """The v4 section's outcomes, knobs, correlation and files (``v4_lens.csv``, ``v4.json``)."""
    from tqdm.auto import tqdm

    bar = bar or tqdm(disable=True)
    outcomes = run_outcomes(v4_outcome, list(variants), set(causal_models), job, workers,
                            threads, bar)  # fmt: skip
    section = {
        "models": list(variants),
        "outcomes": outcomes,
        "knobs": v4_knobs(outcomes, job.seed),
        "correlation": strength_knowledge(outcomes, job.seed),
    }
    frames = [o["summary"] for o in outcomes.values()]
    frames += [c for o in outcomes.values() for c in o["ceilings"].values()]
    write_csv(pd.concat(frames, ignore_index=True), job.out / "v4_lens.csv")
    gates = pd.concat([o["gate"].assign(model=v) for v, o in outcomes.items()], ignore_index=True)
    write_csv(gates, job.out / "v4_hearing.csv")
    write_text(job.out / "v4.json", json.dumps(v4_json(section), indent=2) + "\n")
    return section


def _gate_row(gate: pd.DataFrame) -> pd.Series:
    return gate[(gate.split == "eval") & (gate.voice == "all")].iloc[0]


def _ceiling_at(ceiling: pd.DataFrame, layer: int) -> pd.Series:
    return ceiling[(ceiling.metric == "text_ceiling") & (ceiling.k == 5)
                   & (ceiling.words == "content") & (ceiling.layer == layer)].iloc[0]  # fmt: skip


def v4_json(section: dict) -> dict:
    """The section's numbers as JSON (rows, gate, lens choice, knobs, correlation, verdicts)."""
    from .hearing import GATE_RULE

    models = {}
    for v, o in section["outcomes"].items():
        g = _gate_row(o["gate"])
        layer = o["row"]["transcription"]["layer"]
        c = _ceiling_at(o["ceilings"][o["chosen"]], layer)
        models[v] = {
            "gate": {"win_rate": [g.win_rate, g.ci_low, g.ci_high], "hears": bool(g.hears),
                     "gain_nats": [g.gain_nats, g.gain_ci_low, g.gain_ci_high], "n": int(g.n)},
            "lens": o["chosen"],
            "intermediate_ceiling": {r.lens: r.intermediate_ceiling
                                     for r in o["choice"].itertuples()},
            "text_ceiling_at_layer": [c.value, c.ci_low, c.ci_high],
            "row": o["row"], "knowledge": o["knowledge"], "verdict": o["verdict"],
        }  # fmt: skip
    return {"gate_rule": GATE_RULE, "models": models, "knobs": section["knobs"],
            "correlation": section["correlation"]}  # fmt: skip


def v4_markdown(section: dict, intro: list[str] | None = None) -> list[str]:
    """The v4 section of report.md (``intro``: other lines before the rules and tables)."""
    from speech_interp.lens.choice import CHOICE_RULE

    from .evaluate import SPOKEN_KNOWLEDGE
    from .hearing import GATE_RULE
    from .report import verdict_markdown

    out = section["outcomes"]
    lines = intro or [
        "## Organism v4: a world small enough to hear",
        "",
        f"Organism v4 on its `{V4_WORLD}` world (40 content words; docs/organism_v4.md):",
        "`v4-full` (text-initialised, interleaved data) at three seeds, the knobs (random init,",
        "speech-only and separate data) and two controls (`v4-planted-text`: a text stage planted",
        "where written words are; `v4-decodable-only`: decodable but made unusable). Held-out",
        "sentences in training voices, spoken content words, top-5 over the text vocabulary,",
        "95% CIs resampling word types.",
    ]
    lines = [
        *lines,
        "",
        f"- Recognition gate, {GATE_RULE}.",
        f"- Lens: {CHOICE_RULE}; its text ceiling is the share of the same words *written* that",
        "  it reads. Transcription is read at or after each word's uniqueness point and must beat",
        "  its control word (same category, nearest frequency) and its own pre-onset rate.",
        "",
        "| model | hears: gate [CI] | gain, nats | lens (ceiling 1..L-1: logit / current) | "
        "layer | transcription | control | excess over control | over pre-onset | "
        "share of ceiling | spoken knowledge (chance) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v, o in out.items():
        g = _gate_row(o["gate"])
        r = o["row"]["transcription"]
        ceil = {x.lens: x.intermediate_ceiling for x in o["choice"].itertuples()}
        at = _ceiling_at(o["ceilings"][o["chosen"]], r["layer"])
        share = r["rate"][0] / at.value if at.value > 0 else float("nan")
        k = (o["knowledge"] or {}).get(SPOKEN_KNOWLEDGE)
        know = f"{_fmt(k['value'])} ({k['chance']:.2f})" if k else "n/a"
        lines.append(
            f"| {v} | {'**yes**' if g.hears else 'no'} {_fmt((g.win_rate, g.ci_low, g.ci_high))}"
            f" | {g.gain_nats:.2f} | {o['chosen']} ({ceil['logit']:.2f} / {ceil['current']:.2f})"
            f" | {r['layer']} | {_fmt(r['rate'])} | {_fmt(r['control'])} | {_fmt(r['excess'])} "
            f"| {_fmt(r['excess_pre_onset'])} | {share:.2f} of {at.value:.2f} | {know} |"
        )
    lines += ["", "The same words under the paper's reading (`maxpool`: logits max-pooled over the "
              "word's positions) and the next word (read at the word's last position):", "",
              "| model | transcription, maxpool | next-word layer | next word | control | "
              "excess [CI] |", "|---|---|---|---|---|---|"]  # fmt: skip
    for v, o in out.items():
        r, n = o["row"]["transcription"], o["row"]["next_word"]
        lines.append(f"| {v} | {_fmt(r['maxpool'])} | {n['layer']} | {_fmt(n['rate'])} | "
                     f"{_fmt(n['control'])} | {_fmt(n['excess'])} |")  # fmt: skip
    if section["knobs"]:
        lines += ["", "Knobs, seed by seed (the text-init interleaved model's excess minus the "
                  "knob's, paired over word types):", "",
                  "| seed | full | knob | layers | full - knob [CI] | n |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for k in section["knobs"]:
            lines.append(f"| {k['seed']} | {k['full']} | {k['knob']} | {k['layers'][0]}, "
                         f"{k['layers'][1]} | {_fmt(k['difference'])} | {k['n']} |")  # fmt: skip
    corr = section["correlation"]
    if corr.get("r") is not None:
        lines += ["", f"Transcription strength vs spoken knowledge across the {corr['n_points']} "
                  f"models: Pearson r = {corr['r']:.2f} [{corr['ci_low']:.2f}, "
                  f"{corr['ci_high']:.2f}] (bootstrap over models)."]  # fmt: skip
    verdicts = {v: o["verdict"] for v, o in out.items() if o["verdict"] is not None}
    if verdicts:
        note = "Decodability read by each model's chosen lens (the table above)."
        lines += verdict_markdown(verdicts, note)
    return lines


def write_v4_report(out: Path, section: dict, older: Path | None = None) -> Path:
    """``report.md`` of the demo: the v4 section, its figure (transcription, its control and
    pre-onset, and the chosen lens's text ceiling, per stream) and a link to the v2 run."""
    from speech_interp.plotting import plot_phase_curves

    outcomes = section["outcomes"]
    rows = [o["summary"] for o in outcomes.values()]
    rows += [o["ceilings"][o["chosen"]] for o in outcomes.values()]
    excess = pd.concat([o["excess"] for o in outcomes.values()], ignore_index=True)
    plot_phase_curves(
        pd.concat(rows, ignore_index=True), out / "v4_curves.png",
        pairs=(("transcription", "transcription_control"), ("text_ceiling",)),
        speech_mass=False, excess=excess, title="organism v4: chosen lens",
    )  # fmt: skip
    lines = ["# speech-interp demo: the shipped organism", "", *v4_markdown(section), "",
             "![v4 curves](v4_curves.png)", ""]  # fmt: skip
    if older is not None:
        lines += [f"The organism-v2 run (logit lens, 5 models): [{older.relative_to(out)}]"
                  f"({older.relative_to(out)}).", ""]  # fmt: skip
    return write_text(out / "report.md", "\n".join(lines))


__all__ = [
    "run_v4", "v4_json", "v4_knobs", "v4_markdown", "v4_name", "v4_outcome", "write_v4_report",
]  # fmt: skip
