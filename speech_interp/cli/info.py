"""``speech-interp models | doctor``: what the tool supports, and whether its stack loads here."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()


def models_command() -> None:
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
        if spec.wraps_speech:
            table.add_row("speech span", f"{spec.speech_begin} ... {spec.speech_end}")
        if spec.levels > 1:
            ids = f"unit id = code * {spec.levels} + level"
            table.add_row("codes per frame", f"{spec.levels} ({ids})")
        rate = f"{spec.unit_rate_hz:g} Hz" if spec.unit_rate_hz else "any"
        dedup = "deduplicated" if spec.dedup else "not deduplicated"
        table.add_row("unit rate", f"{rate} ({'frames' if spec.levels > 1 else 'units'}, {dedup})")
        backends = "tl, nnsight"
        if spec.remote_code:
            backends = "nnsight only (remote code); analyses need its module map (not yet)"
        table.add_row("backends", backends)
        table.add_row("architectures", ", ".join(spec.architectures))
        table.add_row("checkpoints", ", ".join(spec.checkpoints) or "yours")
        table.add_row("unit extractor", spec.unit_extractor)
        table.add_row("needs", spec.needs)
        console.print(table)


def doctor_command() -> None:
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
