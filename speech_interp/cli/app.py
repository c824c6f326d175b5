"""The ``speech-interp`` command line: one Typer app, each command from its group's module.

Command modules import torch, TransformerLens and nnsight only inside the commands, so ``--help``
stays fast. A new command goes in its group's module (or a new one) and is registered here.

:func:`main` is the console script: a user error (bad input, a missing file, an unknown model,
remote checks) ends in one line that names the problem and exit status 1; ``--debug`` (before the
command) shows the full traceback instead. Usage errors stay typer's (exit status 2).
"""

from __future__ import annotations

import sys

import typer

from speech_interp.cli.causal import ablate_command, patch_command, substitute_command
from speech_interp.cli.convert import convert_command, make_checkpoint_command
from speech_interp.cli.demo import demo_command
from speech_interp.cli.info import doctor_command, models_command
from speech_interp.cli.lens import fit_lens_command, lens_command, validate_lens_command
from speech_interp.cli.organism import app as organism_app
from speech_interp.cli.reproduce import reproduce_command
from speech_interp.cli.view import view_command

app = typer.Typer(
    help="Mechanistic interpretability for interleaved speech-text LMs.",
    pretty_exceptions_enable=False,
)
_STATE = {"debug": False}
app.add_typer(organism_app, name="organism")
app.command("demo")(demo_command)
app.command("lens")(lens_command)
app.command("fit-lens")(fit_lens_command)
app.command("validate-lens")(validate_lens_command)
app.command("view")(view_command)
app.command("patch")(patch_command)
app.command("ablate")(ablate_command)
app.command("substitute")(substitute_command)
app.command("reproduce")(reproduce_command)
app.command("convert")(convert_command)
app.command("make-checkpoint")(make_checkpoint_command)
app.command("models")(models_command)
app.command("doctor")(doctor_command)


@app.callback()
def callback(
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks of errors"),
) -> None:
    """speech-interp: lens and causal tests of the implicit text stage of speech LMs."""
    _STATE["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Run the command line; an error other than a usage error is one line on stderr, exit 1."""
    _STATE["debug"] = False
    try:
        app(args=argv, prog_name="speech-interp")
    except SystemExit:
        raise
    except Exception as err:
        if _STATE["debug"]:
            raise
        message = " ".join(str(err).split()) or "(no message)"
        print(
            f"error: {type(err).__name__}: {message} (--debug for the traceback)", file=sys.stderr
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
