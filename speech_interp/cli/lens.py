"""``speech-interp lens``: run the lens on a data file and write tables, phases, plots, run.json.

Outputs in ``--out``: ``lens.csv`` (tidy summary, the columns in :data:`LENS_COLUMNS`),
``lens_words.csv`` (one row per spoken word x layer), ``lens_pool.csv`` (one row per word x
layer x member of its control pool), ``lens_quality.csv`` (per layer: KL to the final
distribution, top-1 agreement, the constant-guess baseline, informative or not:
:mod:`speech_interp.lens.quality`), ``phases.json`` (layer bands and their
rules), ``phase_curves.png``, ``token_heatmap.png`` (first utterance with spoken words) and
``run.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from speech_interp.artifacts import write_csv, write_phases, write_run_json, write_text
from speech_interp.cli.common import (
    Backend,
    Data,
    Limit,
    Model,
    Seed,
    Sentences,
    Split,
    TextTokenizer,
    TrustRemoteCode,
    limited,
    load_for_command,
)

LensName = Annotated[
    str,
    typer.Option(help="a registered lens: logit | tuned (next-token channels) | current (the word"
                 " being read, fitted on text on the fly) | patchscope (the identity patchscope;"
                 " slow on long data: a partial forward per read) | auto (of logit and current,"
                 " the one that reads written words best: lens.choice.CHOICE_RULE)"),
]  # fmt: skip
AUTO = "auto"  # --lens auto: the lens chosen by lens.choice.CHOICE_RULE
AUTO_CANDIDATES = ("logit", "current")
TunedPath = Annotated[
    Path | None,
    typer.Option(
        help="lens dir (params.pt + config.json) of --lens tuned | current; fit and saved if absent"
    ),
]
TunedSteps = Annotated[int, typer.Option(help="steps when fitting a tuned lens")]
PROTOCOLS = ("ours", "paper")


def check_lens_options(lens: str, tuned_path: Path | None) -> None:
    """``--lens`` / ``--tuned-path`` checked before any model loads."""
    from speech_interp.lens import LENSES
    from speech_interp.lens.registry import lenses_reading_path

    if lens != AUTO and lens not in LENSES:
        raise typer.BadParameter(
            f"--lens must be one of {', '.join(LENSES)} or {AUTO}, got {lens!r}"
        )
    if lens == AUTO and tuned_path is not None:
        raise typer.BadParameter("--lens auto chooses among lenses built here; drop --tuned-path")
    if tuned_path is not None and not LENSES[lens].accepts_path:
        with_path = " | ".join(lenses_reading_path())
        raise typer.BadParameter(f"--tuned-path is only used with --lens {with_path}")


def lens_for_command(
    lens: str, tuned_path, model, utterances, layout, seed: int, steps: int, model_id: str = ""
):
    """(lens object, note for run.json) from the registry
    (:func:`~speech_interp.lens.registry.build_lens`); a lens read from a directory (the tuned
    lens: loaded from ``tuned_path``, or fit on the data and saved there when absent) needs
    ``--tuned-path``. ``model_id`` names the organism whose world an on-the-fly current lens
    is fitted on. ``auto`` builds :data:`AUTO_CANDIDATES` and keeps the one
    :func:`~speech_interp.lens.choice.choose_lens` picks (its note records every candidate's
    text ceiling and the rule)."""
    from speech_interp.lens import LENSES, build_lens

    if lens == AUTO:
        from speech_interp.lens.choice import CHOICE_RULE, choose_lens

        def builder(name):
            return lambda: lens_for_command(
                name, None, model, utterances, layout, seed, steps, model_id
            )

        chosen, lens_obj, note, _, table = choose_lens(
            model, layout, utterances, {n: builder(n) for n in AUTO_CANDIDATES},
            model_id=model_id, seed=seed,
        )  # fmt: skip
        choice = {r.lens: round(r.intermediate_ceiling, 3) for r in table.itertuples()}
        return lens_obj, f"auto chose {chosen} (intermediate text ceiling {choice}; rule: " + (
            f"{CHOICE_RULE}); {chosen}: {note or 'built'}"
        )

    if tuned_path is None and LENSES[lens].needs_path:
        raise typer.BadParameter(f"--lens {lens} needs --tuned-path (a {lens}-lens directory)")
    texts = None
    if lens == "current" and not (tuned_path is not None and (tuned_path / "params.pt").exists()):
        texts = current_lens_texts(layout, utterances, seed, model_id)
    return build_lens(
        lens, model, layout, path=tuned_path, utterances=utterances, seed=seed, steps=steps,
        texts=texts,
    )  # fmt: skip


# Written sentences a current lens is fitted on when none is given (fit, validation): the
# organism's own grammar (its training distribution; sentences equal to an analysed one left
# out), or CPython's reference prose for any other model (even paragraphs fit, odd validate).
CURRENT_FIT_SENTENCES = 1200
CURRENT_VALIDATION_SENTENCES = 300
PROSE_PARAGRAPHS = (150, 50)  # paragraphs to fit and validate on (their first 60 words each)


def current_lens_texts(layout, utterances, seed: int, model_id: str = "") -> tuple[list, list, str]:
    """(fit sentences, validation sentences, their source) for an on-the-fly current lens: an
    organism's are drawn from its own world's grammar (``model_id`` names it; v2 otherwise)."""
    import re

    if layout.spec.name == "organism":
        from speech_interp.organism.evalset import lens_fit_sentences
        from speech_interp.organism.world import organism_world

        world = organism_world(model_id) if model_id else organism_world("organism")
        analysed = {tuple(w.word for w in u.words) for u in utterances}
        fit, val = lens_fit_sentences(
            world, analysed, CURRENT_FIT_SENTENCES, CURRENT_VALIDATION_SENTENCES, seed
        )
        source = (
            f"organism grammar sentences ({world.name} world, seed {seed}; analysed sentences "
            "left out), "
            f"{CURRENT_FIT_SENTENCES} fit + {CURRENT_VALIDATION_SENTENCES} validation"
        )
        return fit, val, source
    from speech_interp.lens.validate import reference_texts, split_texts

    fit, val = split_texts(reference_texts())
    words = lambda ps: [re.findall(r"[A-Za-z]+", p)[:60] for p in ps]  # noqa: E731
    n_fit, n_val = PROSE_PARAGRAPHS
    source = f"CPython reference prose: {n_fit} even paragraphs fit, {n_val} odd validate"
    return words(fit[:n_fit]), words(val[:n_val]), source


def _ceiling_controls(loaded, layout, utterances, seed: int, model: str, backend: str):
    """The current lens's ceiling controls (:mod:`speech_interp.lens.ceiling_controls`) on the
    fit texts the on-the-fly lens uses; the random-init copy lives in a temporary directory."""
    import tempfile

    from speech_interp.lens.ceiling_controls import ceiling_controls, random_init_copy
    from speech_interp.models import load

    texts = current_lens_texts(layout, utterances, seed, model)
    with tempfile.TemporaryDirectory(prefix="speech-interp-random-") as tmp:
        random_model, _ = load(str(random_init_copy(loaded, Path(tmp), seed)), backend=backend)
        return ceiling_controls(loaded, layout, utterances, texts, random_model=random_model,
                                seed=seed, model_id=model, backend=backend)  # fmt: skip


def lens_command(
    model: Model,
    data: Data = None,
    split: Split = None,
    sentences: Sentences = "heldout",
    backend: Backend = "tl",
    lens: LensName = "logit",
    tuned_path: TunedPath = None,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/lens"),
    seed: Seed = 0,
    chunk_size: Annotated[int, typer.Option(help="vocabulary rows per scoring chunk")] = 8192,
    batch_rows: Annotated[
        int,
        typer.Option(help="utterances scored together up to this many positions x streams"),
    ] = 4096,
    tuned_steps: TunedSteps = 500,
    protocol: Annotated[
        str,
        typer.Option(help="ours | paper (adds the paper's reading beside ours: protocol.csv/.md)"),
    ] = "ours",
    text_tokenizer: TextTokenizer = None,
    trust_remote_code: TrustRemoteCode = False,
    limit: Limit = None,
    ceiling_controls: Annotated[
        bool,
        typer.Option(
            help="with a current lens: also its text ceiling fitted on permuted targets "
            "and on a random-init copy of the model (lens.ceiling_controls)"
        ),
    ] = False,
) -> object:
    """Logit / tuned lens per word and layer: transcription, next word, speech mass, phases."""
    from speech_interp.lens import LENS_CSV, phase_bands, run_lens
    from speech_interp.lens.metrics import CI_RULE, POSITION_RULES
    from speech_interp.lens.phases import PHASE_RULE
    from speech_interp.lens.quality import (
        UNINFORMATIVE_RULE,
        quality_warning,
        uninformative_layers,
    )
    from speech_interp.plotting import plot_phase_curves, plot_token_heatmap

    check_lens_options(lens, tuned_path)
    if ceiling_controls and lens not in ("current", AUTO):
        raise typer.BadParameter("--ceiling-controls needs --lens current (or auto)")
    if protocol not in PROTOCOLS:
        raise typer.BadParameter(
            f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
        )
    utterances, loaded, layout, data_info = load_for_command(
        model, data, backend, split, text_tokenizer, sentences, trust_remote_code
    )
    utterances, limit_info = limited(utterances, loaded, limit)
    data_info = {**data_info, "n_utterances": len(utterances), "utterance_limit": limit_info}
    lens_obj, lens_note = lens_for_command(
        lens, tuned_path, loaded, utterances, layout, seed, tuned_steps, model
    )
    result = run_lens(
        loaded, layout, utterances, lens=lens_obj, chunk_size=chunk_size, seed=seed,
        model_id=model, batch_rows=batch_rows,
    )  # fmt: skip
    from speech_interp.lens.ceiling import CEILING_RULE, blind_streams, blind_warning, text_ceiling

    ceiling = text_ceiling(
        loaded, layout, lens_obj, utterances, model_id=model, backend=backend, seed=seed
    )
    if ceiling_controls and lens_obj.name == "current":
        ceiling = pd.concat(
            [ceiling, _ceiling_controls(loaded, layout, utterances, seed, model, backend)],
            ignore_index=True,
        )
    out.mkdir(parents=True, exist_ok=True)
    write_csv(pd.concat([result.summary, ceiling], ignore_index=True), out / LENS_CSV)
    write_csv(result.words, out / "lens_words.csv")
    write_csv(result.pool, out / "lens_pool.csv")
    write_csv(result.quality, out / "lens_quality.csv")
    # kl_to_final rates a next-token lens; a current-word lens is rated by its text ceiling
    next_token = lens_obj.reads == "next token"
    warning = quality_warning(result.quality, lens) if next_token else None
    write_phases(out, phase_bands(result, seed=seed), PHASE_RULE)
    plot_phase_curves(result.summary, out / "phase_curves.png", title=model)
    if protocol == "paper":
        from speech_interp.evaluation.protocol import protocol_markdown, protocol_table

        table = protocol_table(result.summary, result.words, seed=seed)
        write_csv(table, out / "protocol.csv")
        write_text(out / "protocol.md", protocol_markdown(table))
        typer.echo(protocol_markdown(table))
    spoken = next(u for u in utterances if any(w.modality == "speech" for w in u.words))
    prompt = spoken.to_prompt(layout, loaded.tokenizer)
    plot_token_heatmap(loaded, layout, prompt, lens_obj, out / "token_heatmap.png")
    n_words = int(result.words["item"].nunique())
    data_info = dict(data_info)
    extra = {
        "command": "lens",
        **{k: v for k, v in data_info.items() if k != "data"},
        "backend": backend,
        "lens": lens_obj.name,
        "lens_option": lens,
        "protocol": protocol,
        "tuned_path": str(tuned_path) if tuned_path else None,
        "tuned_lens": lens_note,
        "chunk_size": chunk_size,
        "batch_rows": batch_rows,
        "n_spoken_words": n_words,
        "position_rules": list(POSITION_RULES),
        "controls": "matched on category and frequency (speech_interp.data.targets); expected "
        "control over each word's pool in transcription_control_expected",
        "ci": CI_RULE,
        "lens_quality": {
            "rule": UNINFORMATIVE_RULE,
            "uninformative_layers": uninformative_layers(result.quality),
            "warning": warning,
        },
        "text_ceiling": {"rule": CEILING_RULE, "blind_streams": blind_streams(ceiling)},
        "words_target_missing": result.n_missing,
        "missing_words": result.missing.to_dict(orient="records"),
    }
    from speech_interp.models import weights_dir_of

    write_run_json(
        out, model, seed, weights_dir=weights_dir_of(model), data=data_info["data"], extra=extra
    )
    for line in (warning, blind_warning(ceiling, lens)):
        if line:
            typer.echo(line, err=True)
    typer.echo(f"lens: {n_words} spoken words, {result.n_missing} without a target -> {out}")
    return result


__all__ = ["lens_command"]


def fit_lens_command(
    model: Model,
    out: Annotated[Path, typer.Option(help="tuned-lens directory to write")],
    family: Annotated[
        str | None, typer.Option(help="token layout: text for a text LM (detected if omitted)")
    ] = None,
    steps: Annotated[int, typer.Option(help="optimiser steps (one text per step)")] = 150,
    positions: Annotated[int, typer.Option(help="positions per step (seeded subset)")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 1e-2,
    max_tokens: Annotated[int, typer.Option(help="tokens per text")] = 128,
    n_validate: Annotated[int, typer.Option(help="held-out texts for the curves")] = 40,
    bf16: Annotated[
        bool,
        typer.Option(
            help="bfloat16 autocast for the fit's matmuls (slower with torch 2.11 on CPU)"
        ),
    ] = False,
    seed: Seed = 0,
    backend: Backend = "nnsight",
    text_tokenizer: TextTokenizer = None,
    target: Annotated[
        str,
        typer.Option(help="next: a tuned lens (next token) | current: a current-word lens"),
    ] = "next",
) -> Path:
    """Fit a lens on English text (CPython's reference prose, even paragraphs; an organism's own
    grammar for ``--target current`` on an organism) and validate it on held-out text (odd
    paragraphs). ``next``: a tuned lens against the logit lens, KL to the final distribution,
    current / next token top-5 and top-1 agreement per layer (text_curves.csv, .png).
    ``current``: the current-word lens (lens.current), its validation per stream in config.json
    (load it with ``--lens current --tuned-path DIR``; ``validate-lens`` reads it further)."""
    import time

    import torch

    if target not in ("next", "current"):
        raise typer.BadParameter(f"--target must be next or current, got {target!r}")
    if target == "current":
        return _fit_current_lens(model, out, family, seed, backend, text_tokenizer)

    from speech_interp.lens import TunedLens
    from speech_interp.lens.validate import (
        reference_texts,
        split_texts,
        text_lens_curves,
        text_prompts,
    )
    from speech_interp.models import load
    from speech_interp.plotting.lens import plot_text_curves

    torch.manual_seed(seed)
    loaded, _ = load(model, backend=backend, family=family, text_tokenizer=text_tokenizer)
    fit_texts, val_texts = split_texts(reference_texts())
    fit_prompts = text_prompts(loaded.tokenizer, fit_texts, max_tokens)
    val_prompts = text_prompts(loaded.tokenizer, val_texts[:n_validate], max_tokens)
    lens = TunedLens.from_model(loaded)
    start = time.perf_counter()
    losses = lens.fit(
        loaded, fit_prompts, steps=steps, lr=lr, seed=seed, max_positions=positions,
        dtype=torch.bfloat16 if bf16 else torch.float32,
    )  # fmt: skip
    fit_seconds = time.perf_counter() - start
    lens.save(out)
    curves = text_lens_curves(loaded, {"logit": "logit", "tuned": lens}, val_prompts)
    write_csv(curves, out / "text_curves.csv")
    plot_text_curves(curves, out / "text_curves.png", title=f"{model}: lenses on held-out text")
    from speech_interp.models import weights_dir_of

    write_run_json(
        out,
        model,
        seed,
        weights_dir=weights_dir_of(model),
        extra={
            "command": "fit-lens",
            "text": "CPython pydoc_data.topics prose: even paragraphs fit, odd paragraphs validate",
            "n_fit_texts": len(fit_prompts),
            "n_validation_texts": len(val_prompts),
            "steps": steps,
            "positions_per_step": positions,
            "lr": lr,
            "bf16": bf16,
            "fit_seconds": round(fit_seconds, 1),
            "loss_first": losses[0],
            "loss_last": losses[-1],
        },
    )
    mid = curves[curves.layer == curves.layer.max() // 2].set_index("lens")["kl_to_final"]
    typer.echo(
        f"fit-lens: {steps} steps in {fit_seconds:.0f} s; KL to final at layer "
        f"{curves.layer.max() // 2}: logit {mid['logit']:.2f}, tuned {mid['tuned']:.2f} -> {out}"
    )
    return out


def _fit_current_lens(model: str, out: Path, family, seed: int, backend: str, text_tokenizer):
    """``fit-lens --target current``: fit the current-word lens on the model's text and save it."""
    import time

    from speech_interp.lens.current import CurrentLens
    from speech_interp.models import load, weights_dir_of

    loaded, layout = load(model, backend=backend, family=family, text_tokenizer=text_tokenizer)
    fit, val, source = current_lens_texts(layout, [], seed, model)
    start = time.perf_counter()
    lens, _ = CurrentLens.build(loaded, layout, path=out, texts=(fit, val, source))
    seconds = time.perf_counter() - start
    extra = {"command": "fit-lens", "target": "current", "text": source,
             "fit_seconds": round(seconds, 1)}  # fmt: skip
    write_run_json(out, model, seed, weights_dir=weights_dir_of(model), extra=extra)
    typer.echo(f"fit-lens: current-word lens fitted in {seconds:.0f} s on {source} -> {out}")
    return out


def validate_lens_command(
    model: Model,
    lenses: Annotated[
        str, typer.Option(help="registered lenses with commas (tuned needs --tuned-path)")
    ] = "logit,current,patchscope",
    tuned_path: TunedPath = None,
    sentences: Annotated[
        int, typer.Option(help="validation sentences read (of the current lens's held-out ones)")
    ] = 60,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/validate-lens"),
    family: Annotated[
        str | None, typer.Option(help="token layout: text for a text LM (detected if omitted)")
    ] = None,
    seed: Seed = 0,
    backend: Backend = "tl",
    text_tokenizer: TextTokenizer = None,
) -> Path:
    """Validate lenses on text: per stream, the current, previous and next word of written
    sentences; multi-token words; words split into 2-4 pieces; non-words (lens.text_validation).
    Sentences: an organism's own grammar, or CPython's reference prose, never the current lens's
    fit. Writes text_validation.csv, .png, .md and run.json."""
    import time

    from speech_interp.lens import LENSES
    from speech_interp.lens.text_validation import (
        plot_validation,
        prose_content,
        text_validation,
        validation_markdown,
    )
    from speech_interp.models import load, weights_dir_of

    names = [n.strip() for n in lenses.split(",") if n.strip()]
    unknown = [n for n in names if n not in LENSES]
    if not names or unknown:
        raise typer.BadParameter(f"--lenses must name lenses of {', '.join(LENSES)}: {unknown}")
    if "tuned" in names and tuned_path is None:
        raise typer.BadParameter("--lenses tuned needs --tuned-path (a tuned-lens directory)")
    if sentences < 1:
        raise typer.BadParameter(f"--sentences must be at least 1, got {sentences}")
    loaded, layout = load(model, backend=backend, family=family, text_tokenizer=text_tokenizer)
    _, val, source = current_lens_texts(layout, [], seed, model)
    val = val[:sentences]
    if layout.spec.name == "organism":
        from speech_interp.organism.world import organism_world

        world = organism_world(model)
        content = [[world.is_content(w) for w in s] for s in val]
    else:
        content = prose_content(val)
    built, notes, seconds = {}, {}, {}
    for name in names:
        start = time.perf_counter()
        path = tuned_path if name == "tuned" else None
        built[name], notes[name] = lens_for_command(name, path, loaded, [], layout, seed, 500,
                                                    model)  # fmt: skip
        seconds[name] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    rows, counts = text_validation(loaded, layout, built, val, content, model_id=model, seed=seed)
    read_seconds = round(time.perf_counter() - start, 1)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "text_validation.csv")
    plot_validation(rows, out / "text_validation.png")
    write_text(
        out / "text_validation.md",
        f"# Lenses on text: {model}\n\nSentences: {source} (validation part, first "
        f"{len(val)}); top-5 over the text vocabulary, word-type CIs. Word forms: {counts}.\n\n"
        + validation_markdown(rows),
    )
    write_run_json(out, model, seed, weights_dir=weights_dir_of(model), extra={
        "command": "validate-lens", "lenses": names, "notes": notes, "sentences": source,
        "n_sentences": len(val), "counts": counts, "build_seconds": seconds,
        "read_seconds": read_seconds,
    })  # fmt: skip
    mid = rows[(rows.metric == "written_current") & (rows.k == 5) & (rows.words == "all")]
    middle = int(mid.layer.max()) // 2
    at = mid[mid.layer == middle].set_index("lens")["value"].round(2).to_dict()
    typer.echo(f"validate-lens: written words read at stream {middle}: {at} -> {out}")
    return out
