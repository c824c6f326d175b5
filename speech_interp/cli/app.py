"""The ``speech-interp`` command line: one Typer app, each command from its group's module.

Command modules import torch, TransformerLens and nnsight only inside the commands, so ``--help``
stays fast. A new command goes in its group's module (or a new one) and is registered here.
"""

from __future__ import annotations

import typer

from speech_interp.cli.causal import ablate_command, patch_command, substitute_command
from speech_interp.cli.convert import convert_command
from speech_interp.cli.demo import demo_command
from speech_interp.cli.info import doctor_command, models_command
from speech_interp.cli.lens import lens_command
from speech_interp.organism.cli import app as organism_app

app = typer.Typer(help="Mechanistic interpretability for interleaved speech-text LMs.")
app.add_typer(organism_app, name="organism")
app.command("demo")(demo_command)
app.command("lens")(lens_command)
app.command("patch")(patch_command)
app.command("ablate")(ablate_command)
app.command("substitute")(substitute_command)
app.command("convert")(convert_command)
app.command("models")(models_command)
app.command("doctor")(doctor_command)


@app.callback()
def main() -> None:
    """speech-interp: lens and causal tests of the implicit text stage of speech LMs."""


if __name__ == "__main__":
    app()
