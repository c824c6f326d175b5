"""Build speech-only, text-only and interleaved prompts with exact per-word token positions.

Rules (stated once, used everywhere):

- A prompt is a sequence of *segments*, maximal runs of words in one modality. With
  ``markers=True`` each segment starts with its modality marker (``<speech>`` / ``<text>`` in SIMS),
  as in interleaved training data.
- A spoken word contributes its unit tokens, in order, exactly as given (already deduplicated by
  the caller or by :func:`speech_interp.speech.utterance_units`). Its *word positions* are those
  tokens' positions.
- A text segment is the words joined by single spaces, with a leading space (``lead_space``), and
  tokenized in one call; each token belongs to the word its characters overlap (a token of pure
  whitespace belongs to the word after it).
- ``token_modality`` codes each position: 0 text, 1 speech, 2 marker, 3 special (e.g. BOS).

Families whose own code tokenizes the prompt as one *string* (``FamilySpec.prompt_rule ==
"string"``: SpiritLM, rule and source in :mod:`speech_interp.hooks.spiritlm`) get exactly that
string: marker, then the words of a text run joined by spaces (no leading space) or the unit
tokens of a speech run, all concatenated and tokenized whole. With a SentencePiece model at hand
(``tokenizer.vocab_file``) the slow tokenizer's rule is applied: the string is cut at the added
tokens (markers, units) and each stretch of text is encoded by SentencePiece on its own; without
one, the tokenizer encodes the whole string. Word positions follow the characters: a token
belongs to the word its characters overlap (whitespace-only tokens to the word after them).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from speech_interp.hooks import SpecError, TokenLayout
from speech_interp.hooks.spiritlm import PITCH_RATE, STYLE_RATE

Modality = Literal["speech", "text"]


@dataclass(frozen=True)
class ExpressiveStreams:
    """Pitch and style units of one speech run for SpiritLM's expressive model: the raw
    (not deduplicated) streams of that run's audio, from its start, at their rates."""

    pitch: Sequence[int]
    style: Sequence[int]
    pitch_rate: float = PITCH_RATE
    style_rate: float = STYLE_RATE


TEXT, SPEECH, MARKER, SPECIAL = 0, 1, 2, 3
MODALITY_NAMES = {TEXT: "text", SPEECH: "speech", MARKER: "marker", SPECIAL: "special"}


@dataclass(frozen=True, eq=False)
class Prompt:
    """Token ids of one prompt plus which positions belong to which word."""

    input_ids: Int[Tensor, " pos"]
    words: tuple[str, ...]
    word_modalities: tuple[str, ...]
    word_positions: tuple[Int[Tensor, " n"], ...]
    token_modality: Int[Tensor, " pos"]
    token_word: Int[Tensor, " pos"]

    def __len__(self) -> int:
        return int(self.input_ids.numel())

    def last_position(self, word: int) -> int:
        """Position of the last token of word ``word``."""
        return int(self.word_positions[word][-1])

    def to_frame(self) -> pd.DataFrame:
        """One row per token: position, token id, modality, word index and word."""
        word_idx = self.token_word.tolist()
        return pd.DataFrame(
            {
                "position": range(len(self)),
                "token_id": self.input_ids.tolist(),
                "modality": [MODALITY_NAMES[m] for m in self.token_modality.tolist()],
                "word_index": word_idx,
                "word": [self.words[w] if w >= 0 else None for w in word_idx],
            }
        )


def _modalities(words: Sequence[str], modalities) -> list[str]:
    if isinstance(modalities, str):
        modalities = [modalities] * len(words)
    modalities = list(modalities)
    if len(modalities) != len(words):
        raise ValueError(f"{len(words)} words but {len(modalities)} modalities")
    for w, m in zip(words, modalities, strict=True):
        if m not in ("speech", "text"):
            raise ValueError(f"modality of word {w!r} must be 'speech' or 'text', got {m!r}")
    return modalities


def _segments(modalities: list[str]) -> list[tuple[str, list[int]]]:
    segments: list[tuple[str, list[int]]] = []
    for i, m in enumerate(modalities):
        if segments and segments[-1][0] == m:
            segments[-1][1].append(i)
        else:
            segments.append((m, [i]))
    return segments


def _text_tokens(tokenizer, words: list[str], lead_space: bool) -> tuple[list[int], list[int]]:
    """Token ids of a text segment and, per token, the index (within ``words``) of its word."""
    text = " " if lead_space else ""
    spans: list[tuple[int, int]] = []
    for i, w in enumerate(words):
        text += " " if i else ""
        spans.append((len(text), len(text) + len(w)))
        text += w
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, owners = list(enc["input_ids"]), []
    for start, end in enc["offset_mapping"]:
        chunk = text[start:end]
        if chunk.strip() == "":  # whitespace-only token: belongs to the next word
            owner = next((j for j, (s, _) in enumerate(spans) if s >= end), len(words) - 1)
        else:
            owner = next(j for j, (s, e) in enumerate(spans) if start < e and end > s)
        owners.append(owner)
    for j, w in enumerate(words):
        if j not in owners:
            raise SpecError(f"text word {w!r} produced no tokens")
    return ids, owners


def _unit_pieces(layout, tokenizer, units: Sequence[int], owner: int) -> list[tuple[str, int, int]]:
    """The unit tokens of ``units`` as (token string, SPEECH, owner) pieces."""
    ids = layout.units_to_tokens(units).tolist()
    return [(t, SPEECH, owner) for t in tokenizer.convert_ids_to_tokens(ids)]


def _extra_tokens(layout, tokenizer, stream: str, values: Sequence[int]) -> list[str]:
    """Token strings of a family's extra speech stream (SpiritLM's pitch / style units)."""
    ids = layout.extra_speech_ids.get(stream)
    if ids is None or not len(ids):
        raise SpecError(f"family {layout.spec.name!r} has no {stream} tokens")
    bad = [v for v in values if not 0 <= v < len(ids)]
    if bad:
        raise SpecError(f"{stream} unit {bad[0]} is outside 0..{len(ids) - 1}")
    return tokenizer.convert_ids_to_tokens([int(ids[v]) for v in values])


def _expressive_run(layout, tokenizer, members, units, unit_frames, streams):
    """One speech run's pieces in SpiritLM's expressive order (hooks.spiritlm.expressive_order)."""
    from speech_interp.hooks.spiritlm import expressive_order

    hubert, frames = [], []
    for i in members:
        f = None if unit_frames is None else unit_frames[i]
        if f is None or len(f) != len(units[i]):
            raise ValueError(
                f"spoken word {i}: expressive prompts need unit_frames[{i}], the raw frame index "
                f"of each of its {len(units[i])} units"
            )
        hubert += _unit_pieces(layout, tokenizer, units[i], i)
        frames += [int(x) for x in f]
    order = expressive_order(
        frames, streams.pitch, streams.style,
        pitch_rate=streams.pitch_rate, style_rate=streams.style_rate,
    )  # fmt: skip
    pitch = _extra_tokens(layout, tokenizer, "pitch", streams.pitch)
    style = _extra_tokens(layout, tokenizer, "style", streams.style)
    extra = {"pitch": pitch, "style": style}
    return [hubert[k] if s == "hubert" else (extra[s][k], SPEECH, -1) for s, k in order]


def _string_pieces(layout, tokenizer, words, mods, units, gaps, markers, unit_frames, expressive):
    """The family's prompt string as (text, kind, word) pieces, in order."""
    names = {"speech": layout.spec.speech_marker, "text": layout.spec.text_marker}
    pieces: list[tuple[str, int, int]] = []
    runs = iter(expressive) if expressive is not None else None
    for modality, members in _segments(mods):
        if markers:
            pieces.append((names[modality], MARKER, -1))
        if modality == "speech" and runs is not None:
            streams = next(runs, None)
            if streams is None:
                raise ValueError("expressive= needs one ExpressiveStreams per speech run")
            pieces += _expressive_run(layout, tokenizer, members, units, unit_frames, streams)
            continue
        for j, i in enumerate(members):
            if modality == "text":
                pieces += [(" ", TEXT, i)] if j else []
                pieces.append((words[i], TEXT, i))
                continue
            if gaps is not None and len(gaps[i]):
                pieces += _unit_pieces(layout, tokenizer, gaps[i], -1)
            pieces += _unit_pieces(layout, tokenizer, units[i], i)
    if gaps is not None and len(gaps[-1]):
        pieces += _unit_pieces(layout, tokenizer, gaps[-1], -1)
    return pieces


def _sentencepiece(tokenizer):
    """The tokenizer's SentencePiece model, if it has one on disk (Llama / SpiritLM dirs)."""
    path = getattr(tokenizer, "vocab_file", None)
    if not path or not str(path).endswith(".model"):
        return None
    return _load_sentencepiece(str(path))


@functools.lru_cache(maxsize=8)
def _load_sentencepiece(path: str):
    """One SentencePiece processor per model file (prompts are built once per utterance)."""
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=path)


def _owner(spans: list[tuple[int, int, int]], start: int, end: int) -> int:
    """Word of the first piece a token's characters [start, end) overlap (spaces are pieces
    owned by the word after them; an empty span takes the piece it sits in)."""
    for s, e, word in spans:
        if (start < e and end > s) or (start == end and s <= start < e):
            return word
    return spans[-1][2]


def _tokenize_string(tokenizer, pieces) -> tuple[list[int], list[int], list[int]]:
    """Token ids, kinds and owners of the pieces' concatenation (rule in the module docstring)."""
    starts = [0]
    for p, _, _ in pieces:
        starts.append(starts[-1] + len(p))
    spans = [(a, a + len(p), w) for a, (p, k, w) in zip(starts, pieces, strict=False) if k == TEXT]
    tokens: list[tuple[int, int, int]] = []  # (id, kind, word)
    sp = _sentencepiece(tokenizer)
    if sp is None:  # no SentencePiece model: the tokenizer encodes the whole string
        text = "".join(p for p, _, _ in pieces)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        for tid, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
            _, kind, word = pieces[bisect.bisect_right(starts, a) - 1]
            tokens.append((int(tid), kind, _owner(spans, a, b) if kind == TEXT else word))
    else:  # the slow rule: added tokens whole, each stretch of text by SentencePiece alone
        i = 0
        while i < len(pieces):
            piece, kind, word = pieces[i]
            if kind != TEXT:
                tokens.append((tokenizer.convert_tokens_to_ids(piece), kind, word))
                i += 1
                continue
            first = i
            while i < len(pieces) and pieces[i][1] == TEXT:
                i += 1
            chunk = "".join(p for p, _, _ in pieces[first:i])
            for sp_piece in sp.encode(chunk, return_type="proto").pieces:
                a, b = starts[first] + sp_piece.begin, starts[first] + sp_piece.end
                tid = tokenizer.convert_tokens_to_ids(sp_piece.piece)
                tokens.append((tid, TEXT, _owner(spans, a, b)))
    ids, kinds, owners = (
        (list(col) for col in zip(*tokens, strict=True)) if tokens else ([], [], [])
    )
    return ids, kinds, owners


def build_prompt(
    layout: TokenLayout,
    tokenizer,
    words: Sequence[str],
    modalities: Modality | Sequence[Modality] = "speech",
    units: Sequence[Sequence[int] | None] | None = None,
    *,
    markers: bool = True,
    bos: bool = True,
    lead_space: bool = True,
    gaps: Sequence[Sequence[int]] | None = None,
    unit_frames: Sequence[Sequence[int] | None] | None = None,
    expressive: Sequence[ExpressiveStreams] | None = None,
) -> Prompt:
    """Token ids, per-word positions and a modality mask for one prompt.

    ``units[i]`` is the (deduplicated) unit id list of word ``i``; required for spoken words,
    ignored (may be None) for text words. ``gaps`` (len(words) + 1 unit lists, e.g. from
    :func:`utterance_units`) are speech units outside any word: ``gaps[i]`` goes before spoken
    word ``i``, ``gaps[-1]`` after the last word; they belong to no word (``token_word`` -1).
    ``expressive`` (SpiritLM expressive, string-rule families only): one
    :class:`ExpressiveStreams` per speech run, merged with the units by time as SpiritLM does;
    it needs ``unit_frames[i]``, the raw HuBERT frame index of each unit of spoken word ``i``
    (from the run's start; :attr:`speech_interp.speech.SpokenUtterance.word_unit_frames`).
    """
    words = list(words)
    if not words:
        raise ValueError("a prompt needs at least one word")
    for i, w in enumerate(words):
        if not isinstance(w, str) or not w.strip():
            raise ValueError(f"word {i} is empty")
    mods = _modalities(words, modalities)
    if units is not None and len(units) != len(words):
        raise ValueError(f"{len(words)} words but {len(units)} unit lists")
    if gaps is not None:
        if len(gaps) != len(words) + 1:
            raise ValueError(f"gaps must hold len(words) + 1 = {len(words) + 1} unit lists")
        for i, gap in enumerate(gaps):
            if len(gap) and (mods[min(i, len(words) - 1)] != "speech"):
                raise ValueError(f"gap units next to text word {words[min(i, len(words) - 1)]!r}")
    switch = layout.speech_marker_id is not None and layout.text_marker_id is not None
    wrap = layout.spec.wraps_speech
    if markers and not (switch or wrap):
        raise SpecError(f"family {layout.spec.name!r} has no modality markers; use markers=False")

    ids: list[int] = []
    kinds: list[int] = []
    owner: list[int] = []
    if bos and getattr(tokenizer, "bos_token_id", None) is not None:
        ids, kinds, owner = [tokenizer.bos_token_id], [SPECIAL], [-1]
    if expressive is not None and layout.spec.prompt_rule != "string":
        raise SpecError(
            f"expressive streams are for SpiritLM-style families, not {layout.spec.name!r}"
        )
    if expressive is not None and gaps is not None:
        raise ValueError("expressive prompts take no gap units (give them as words' units)")
    if layout.spec.prompt_rule == "string":
        for i, m in enumerate(mods):
            if m == "speech" and (units is None or units[i] is None or not len(units[i])):
                raise ValueError(f"spoken word {i} ({words[i]!r}) has no units")
        pieces = _string_pieces(
            layout, tokenizer, words, mods, units, gaps, markers, unit_frames, expressive
        )
        more = _tokenize_string(tokenizer, pieces)
        ids, kinds, owner = ids + more[0], kinds + more[1], owner + more[2]
        return _prompt(ids, kinds, owner, words, mods)

    def push(token_ids, kind, word_index):
        ids.extend(int(t) for t in token_ids)
        kinds.extend([kind] * len(token_ids))
        owner.extend(word_index if isinstance(word_index, list) else [word_index] * len(token_ids))

    segments = _segments(mods)
    for s, (modality, members) in enumerate(segments):
        if markers and switch:
            marker = layout.speech_marker_id if modality == "speech" else layout.text_marker_id
            push([marker], MARKER, -1)
        if modality == "text":
            tok_ids, local = _text_tokens(tokenizer, [words[i] for i in members], lead_space)
            push(tok_ids, TEXT, [members[j] for j in local])
            continue
        if markers and wrap:
            push([layout.speech_begin_id], MARKER, -1)
        for i in members:
            if gaps is not None and len(gaps[i]):
                push(layout.units_to_tokens(gaps[i]).tolist(), SPEECH, -1)
            word_units = None if units is None else units[i]
            if word_units is None:
                raise ValueError(f"spoken word {i} ({words[i]!r}) has no unit list")
            if len(word_units) == 0:
                raise ValueError(f"spoken word {i} ({words[i]!r}) has no units")
            try:
                layout.check_frames(word_units)
                push(layout.units_to_tokens(word_units).tolist(), SPEECH, i)
            except SpecError as err:
                raise SpecError(f"word {i} ({words[i]!r}): {err}") from None
        # trailing gap units (only ever after a spoken last word): inside the speech span
        if s == len(segments) - 1 and gaps is not None and len(gaps[-1]):
            push(layout.units_to_tokens(gaps[-1]).tolist(), SPEECH, -1)
        if markers and wrap:
            push([layout.speech_end_id], MARKER, -1)
    return _prompt(ids, kinds, owner, words, mods)


def _prompt(ids, kinds, owner, words, mods) -> Prompt:
    for i, (w, m) in enumerate(zip(words, mods, strict=True)):
        if m == "text" and i not in owner:
            raise SpecError(f"text word {w!r} produced no tokens")
    input_ids = torch.tensor(ids, dtype=torch.long)
    token_word = torch.tensor(owner, dtype=torch.long)
    positions = tuple(torch.nonzero(token_word == i).flatten() for i in range(len(words)))
    return Prompt(
        input_ids=input_ids,
        words=tuple(words),
        word_modalities=tuple(mods),
        word_positions=positions,
        token_modality=torch.tensor(kinds, dtype=torch.long),
        token_word=token_word,
    )
