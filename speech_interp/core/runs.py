"""Run set-up shared by every lens and causal routine, and the layer spans they act on.

:func:`run_context` checks the backend / remote pair once and fills in the tokenizer and model id
(the model's own unless given).

**Spans** are written ``"a-b"`` or ``"a"`` (or a pair) and come in two numberings:

- **blocks** ``0..L-1`` (patching, attribution): the decoder blocks whose components are patched;
- **streams** ``0..L`` (ablation, substitution), the lens numbering: stream ``l < L`` is block l's
  input (``resid_pre``), stream ``L`` the last block's output (``resid_post``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from speech_interp.core.remote import resolve_remote
from speech_interp.core.residuals import n_layers as count_layers
from speech_interp.models import backend_of, hf_model, tokenizer_of


class RunContext(NamedTuple):
    """The backend, checked remote mode, tokenizer, model id and block count of one run."""

    backend: str
    remote: bool | str
    tokenizer: object
    model_id: str
    n_layers: int


def run_context(model, remote: bool | str = False, tokenizer=None, model_id=None) -> RunContext:
    """:class:`RunContext` of a run on ``model``.

    Every lens and causal routine takes these keyword arguments, with these meanings:

    Args:
        remote: ``False`` (run here), ``"local"`` (nnsight's simulation of NDIF) or ``True``
            (NDIF, ``NDIF_API_KEY``); nnsight backend only (:mod:`speech_interp.core.remote`).
        tokenizer: the tokenizer of the prompts (default: the model's own).
        model_id: the ``model`` column of result tables (default: ``config.name_or_path``).
        progress: (the routines) show a progress bar.
    """
    backend = backend_of(model)
    tok = tokenizer if tokenizer is not None else tokenizer_of(model)
    model_id = model_id or str(hf_model(model).config.name_or_path)
    return RunContext(backend, resolve_remote(remote, backend), tok, model_id, count_layers(model))


def parse_span(span: str | Sequence[int]) -> tuple[int, int]:
    """``"a-b"``, ``"a"`` or ``(a, b)`` -> (a, b), unchecked; a ValueError names the form."""
    try:
        if isinstance(span, str):
            parts = [int(p) for p in span.replace(" ", "").split("-")]
        else:
            parts = [int(p) for p in span]
        if len(parts) == 1:
            parts = parts * 2
        a, b = parts
    except ValueError:
        raise ValueError(f"a layer span must look like '2-4' or '3', got {span!r}") from None
    return a, b


def stream_band(span: str | Sequence[int], n_layers: int) -> tuple[int, int]:
    """A span of residual streams, checked against streams ``0..n_layers``."""
    a, b = parse_span(span)
    if not 0 <= a <= b <= n_layers:
        raise ValueError(
            f"stream band {a}-{b} out of range: a {n_layers}-layer model has residual streams "
            f"0..{n_layers} (stream l < {n_layers} is block l's input, {n_layers} the output)"
        )
    return a, b


def block_list(blocks: str | Sequence[int] | None, n_layers: int) -> list[int]:
    """Blocks to act on: all when None, a span ``"a-b"``, or a list; each checked."""
    if blocks is None:
        return list(range(n_layers))
    if isinstance(blocks, str):
        a, b = parse_span(blocks)
        if a > b:
            raise ValueError(f"block span {blocks!r}: the first block exceeds the last")
        blocks = range(a, b + 1)
    chosen = [int(x) for x in blocks]
    bad = [x for x in chosen if not 0 <= x < n_layers]
    if bad or not chosen:
        raise ValueError(
            f"blocks {bad or chosen} out of range for a {n_layers}-layer model (0..{n_layers - 1})"
        )
    return chosen


def band_label(band: tuple[int, int]) -> str:
    """``(a, b)`` -> ``"a-b"``, the form written to tables and ``verdict.json``."""
    return f"{band[0]}-{band[1]}"


__all__ = [
    "RunContext",
    "band_label",
    "block_list",
    "parse_span",
    "run_context",
    "stream_band",
]
