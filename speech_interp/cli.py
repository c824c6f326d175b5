"""The ``speech-interp`` command line."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from speech_interp.causal_cli import ablate_command, patch_command, substitute_command
from speech_interp.lens_cli import lens_command
from speech_interp.organism.cli import app as organism_app

app = typer.Typer(help="Mechanistic interpretability for interleaved speech-text LMs.")
app.add_typer(organism_app, name="organism")
app.command("lens")(lens_command)
app.command("patch")(patch_command)
app.command("ablate")(ablate_command)
app.command("substitute")(substitute_command)
console = Console()


@app.callback()
def main() -> None:
    """speech-interp: lens and causal tests of the implicit text stage of speech LMs."""


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), help="output directory"),
    backend: str = typer.Option("tl", help="tl | nnsight"),
    limit: int = typer.Option(0, help="use only the first N utterances (0 = all)"),
    seed: int = typer.Option(0, help="seed of the control draw and bootstrap"),
    causal: bool = typer.Option(True, help="also run the ablation verdict per layer band"),
    max_words: int = typer.Option(80, help="spoken words per band in the causal test"),
) -> None:
    """The main job: lens + causal verdict on the shipped organism and its ablations."""
    from speech_interp.demo import run_demo

    report = run_demo(
        out, backend=backend, limit=limit or None, seed=seed, causal=causal, max_words=max_words
    )
    console.print(report.read_text())
    console.print(f"[green]wrote[/green] {out}")


@app.command()
def models() -> None:
    """List the supported model families, their token layouts and what each needs to run."""
    from speech_interp.hooks import FAMILIES

    for spec in FAMILIES.values():
        table = Table(title=f"{spec.name}: {spec.description}", show_header=False, expand=True)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        n = f" ({spec.n_units} units)" if spec.n_units else ""
        table.add_row("unit tokens", f"{spec.unit_pattern}{n}")
        for stream, pattern in spec.extra_speech_patterns.items():
            table.add_row(f"{stream} tokens", pattern)
        markers = " / ".join(m for m in (spec.speech_marker, spec.text_marker) if m)
        table.add_row("markers (speech / text)", markers or "none")
        table.add_row("unit rate", f"{spec.unit_rate_hz:g} Hz" if spec.unit_rate_hz else "any")
        table.add_row("architectures", ", ".join(spec.architectures))
        table.add_row("checkpoints", ", ".join(spec.checkpoints) or "yours")
        table.add_row("unit extractor", spec.unit_extractor)
        table.add_row("needs", spec.needs)
        console.print(table)


@app.command()
def doctor() -> None:
    """Check that torch, torchaudio, TransformerLens and nnsight load together; print versions."""
    import importlib.metadata as md

    import torch

    from speech_interp.speech.audio import require_torchaudio

    torchaudio = require_torchaudio()
    wave = torch.randn(1, 8000)
    torchaudio.functional.resample(wave, 8000, 16000)
    torchaudio.transforms.MFCC(sample_rate=16000, n_mfcc=13)(wave)
    for pkg in ("torch", "torchaudio", "transformer-lens", "nnsight", "transformers"):
        console.print(f"{pkg:18} {md.version(pkg)}")
    console.print("[green]ok[/green]: torchaudio runs resample and MFCC beside this torch")


if __name__ == "__main__":
    app()
