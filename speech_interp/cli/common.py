"""What every command shares: its options, the one model + data loader, the remote flag.

Options: ``--model`` (HF id, local dir or ``organism[:v]``), ``--data`` (utterance file,
:mod:`speech_interp.data`; for an organism model the shipped evaluation set and its ``eval``
split when omitted), ``--split``, ``--sentences`` (held-out sentences by default),
``--backend tl|nnsight``, ``--remote off|local|ndif`` (nnsight only: ``local`` is nnsight's
simulation of the NDIF server, ``ndif`` needs ``NDIF_API_KEY``), ``--seed``, ``--out``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, NamedTuple

import typer

REMOTE = {"off": False, "local": "local", "ndif": True}

Model = Annotated[str, typer.Option(help="HF id, local save_pretrained dir or organism[:v]")]
Data = Annotated[
    Path | None,
    typer.Option(
        help="utterance file (JSON Lines, speech_interp.data); organism models default to the "
        "shipped evaluation set, split eval"
    ),
]
Split = Annotated[str | None, typer.Option(help="use only utterances of this split (e.g. eval)")]
Sentences = Annotated[
    str,
    typer.Option(help="heldout (not seen_in_training) | seen | all"),
]
Backend = Annotated[str, typer.Option(help="tl | nnsight")]
Remote = Annotated[str, typer.Option(help="off | local (simulated NDIF) | ndif (NDIF_API_KEY)")]
Seed = Annotated[int, typer.Option(help="seed of controls, pairs, directions and bootstrap")]
TextTokenizer = Annotated[
    str | None,
    typer.Option(help="slamkit (SIMS) checkpoints: the base text tokenizer (hub id or dir)"),
]
TrustRemoteCode = Annotated[
    bool,
    typer.Option(help="allow a checkpoint's own model code (GLM-4-Voice); only if you trust it"),
]
# A lens run on real weights (SmolLM2-135M: ~10 s an utterance on 2 cores, the full vocabulary
# at 31 streams) reads this many utterances unless --limit says otherwise; small models read all.
REAL_WEIGHTS_PARAMETERS = 20_000_000
REAL_WEIGHTS_LIMIT = 12
Limit = Annotated[
    int | None,
    typer.Option(
        help="read the first N utterances (0 = all; default: all, or the first "
        f"{REAL_WEIGHTS_LIMIT} for a model over {REAL_WEIGHTS_PARAMETERS // 1_000_000}M "
        "parameters, as the output says)"
    ),
]
Layers = Annotated[
    str | None, typer.Option(hidden=True, help="deprecated: --blocks (patch) / --streams")
]


def remote_mode(remote: str, backend: str) -> bool | str:
    """``--remote`` as the ``remote=`` argument of the Python API; a usage error when invalid."""
    if remote not in REMOTE:
        raise typer.BadParameter(f"--remote must be one of {', '.join(REMOTE)}, got {remote!r}")
    if REMOTE[remote] and backend != "nnsight":
        raise typer.BadParameter("--remote local|ndif needs --backend nnsight")
    from speech_interp.core.remote import resolve_remote

    return resolve_remote(REMOTE[remote], backend)  # key and host checked before the model loads


class CommandInput(NamedTuple):
    """What a command reads: the selected utterances, the model, its layout, and where the
    utterances came from (``data_info``, recorded in run.json)."""

    utterances: list
    model: object
    layout: object
    data_info: dict


def load_for_command(
    model: str,
    data: Path | None,
    backend: str,
    split: str | None,
    text_tokenizer: str | None = None,
    sentences: str = "heldout",
    trust_remote_code: bool = False,
) -> CommandInput:
    """Read ``data`` (only ``split`` if given, only ``sentences``) and load ``model``.

    An organism model without ``--data`` reads the shipped evaluation set, split ``eval`` unless
    ``--split`` says otherwise. An unknown ``--split`` or an empty selection is a usage error;
    a data file whose header names another family than the model's is an error."""
    from speech_interp.data import UnknownSplit, read_utterances, select_sentences, select_split
    from speech_interp.models import load

    if data is None:
        if not model.startswith("organism"):
            raise typer.BadParameter(
                "--data is required (only organism models have a shipped default)",
                param_hint="--data",
            )
        from speech_interp.organism.world import eval_data, organism_world

        data, split = eval_data(organism_world(model)), split or "eval"
    header, utterances = read_utterances(data)
    try:
        utterances = select_split(utterances, split)
    except UnknownSplit as err:
        raise typer.BadParameter(str(err), param_hint="--split") from None
    n_split = len(utterances)
    try:
        utterances = select_sentences(utterances, sentences)
    except (UnknownSplit, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="--sentences") from None
    loaded, layout = load(
        model, backend=backend, text_tokenizer=text_tokenizer, trust_remote_code=trust_remote_code
    )
    family = header.get("family")
    if family is not None and family != layout.spec.name:
        raise ValueError(
            f"{data} holds units of family {family!r} but the model is {layout.spec.name!r}"
        )
    info = {
        "data": str(data),
        "split": split,
        "sentences": sentences,
        "n_utterances": len(utterances),
        "n_left_out_by_sentences": n_split - len(utterances),
    }
    return CommandInput(utterances, loaded, layout, info)


def limited(utterances: list, model, limit: int | None) -> tuple[list, dict]:
    """(the utterances a command reads, what was limited and why, for run.json): ``limit`` as
    given (0 = all), or by default all for small models and :data:`REAL_WEIGHTS_LIMIT` for
    models over :data:`REAL_WEIGHTS_PARAMETERS` parameters, said on stderr when it cuts."""
    from speech_interp.models import hf_model

    if limit is not None and limit < 0:
        raise typer.BadParameter(f"--limit must be >= 0, got {limit}", param_hint="--limit")
    n_params = sum(p.numel() for p in hf_model(model).parameters())
    rule = "--limit as given"
    if limit is None:
        big = n_params > REAL_WEIGHTS_PARAMETERS
        limit = REAL_WEIGHTS_LIMIT if big else 0
        rule = (f"default: the first {REAL_WEIGHTS_LIMIT} utterances for models over "
                f"{REAL_WEIGHTS_PARAMETERS:,} parameters, else all")  # fmt: skip
    kept = utterances[:limit] if limit else list(utterances)
    if len(kept) < len(utterances):
        typer.echo(
            f"note: reading the first {len(kept)} of {len(utterances)} utterances "
            f"({n_params / 1e6:.0f}M parameters; --limit 0 reads all)",
            err=True,
        )
    info = {"limit": limit or None, "limit_rule": rule, "n_available": len(utterances),
            "n_read": len(kept)}  # fmt: skip
    return kept, info


def renamed_option(new: str | None, old: str | None, new_flag: str) -> str | None:
    """The value of a renamed option: the new flag, else the deprecated ``--layers`` (warned)."""
    if old is None:
        return new
    if new is not None:
        raise typer.BadParameter(f"give {new_flag} only (--layers is its deprecated old name)")
    message = f"--layers is deprecated: use {new_flag}"
    warnings.warn(message, DeprecationWarning, stacklevel=2)
    typer.echo(f"warning: {message}", err=True)
    return old


def spans(text: str | None) -> list[str]:
    """A comma list of spans ``"1-2,3-4"`` -> ``["1-2", "3-4"]``."""
    return [] if text is None else [b.strip() for b in text.split(",") if b.strip()]


def checked(fn, *args, flag: str):
    """``fn(*args)``; a ValueError becomes a usage error naming ``flag``."""
    try:
        return fn(*args)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=flag) from None


__all__ = [
    "CommandInput",
    "REMOTE",
    "checked",
    "limited",
    "load_for_command",
    "remote_mode",
    "renamed_option",
    "spans",
]
