"""The ``speech-interp`` command line: :data:`app` and one module per command group."""

from speech_interp.cli.app import app, main

__all__ = ["app", "main"]
