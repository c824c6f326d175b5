"""``speech-interp convert``: a published checkpoint in another format -> a plain HF directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speech_interp.cli.common import TextTokenizer


def convert_command(
    checkpoint: Annotated[str, typer.Argument(help="slamkit UnitLM checkpoint: hub id or dir")],
    out: Annotated[Path, typer.Option(help="output directory (plain HF causal LM + tokenizer)")],
    text_tokenizer: TextTokenizer = None,
) -> Path:
    """Write a slamkit (SIMS) checkpoint as a plain HF directory that TransformerLens, nnsight,
    AutoModelForCausalLM and an NDIF server load as is."""
    from speech_interp.artifacts import write_run_json
    from speech_interp.checkpoints import convert_checkpoint
    from speech_interp.models import load

    path = convert_checkpoint(checkpoint, out, text_tokenizer=text_tokenizer)
    _, layout = load(str(path), backend="tl")  # the converted directory loads and is detected
    write_run_json(
        path,
        checkpoint,
        0,
        extra={"command": "convert", "text_tokenizer": text_tokenizer, "family": layout.spec.name},
    )
    typer.echo(
        f"convert: {checkpoint} -> {path} (family {layout.spec.name}, {layout.n_units} units)"
    )
    return path
