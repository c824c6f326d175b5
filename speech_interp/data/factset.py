"""Reader of spoken common-sense facts in the layout of the paper's evaluation set,
``slprl/common-sense-facts-audio`` (a local Parquet file, a directory of them, a ``datasets``
directory, or ``hf:<repo>`` where the Hub is reachable).

**What is known of the published schema** (docs/research/eval_set_sources.md has every source):
the dataset's exact features are *not* stored anywhere we can read (no card, no feature list, no
code that reads it); the Hub viewer shows 281 rows and a third-party script names
``data/*.parquet``. So the reader maps columns **by name at run time**, from the lab's own
published layouts, and fails naming the columns it found when it cannot:

- word timings as in ``slprl/sTinyStories``: ``aligned_text``, a list of structs
  ``{end_time, start_time, word}`` in seconds (struct order end, start, word: read by name);
  a column ``<audio>_aligned_text`` holds one rendering's own timings;
- prompt / completions as in ``slprl/SpokenSwag``: ``prompt_text``, ``chosen_text``,
  ``rejected_text``, with audio columns ``prompt``, ``chosen``, ``rejected``; and slamkit's
  cross-modal naming (``*_mutual`` the prompt, ``*_correct``, ``*_incorrect``);
- audio as ``datasets`` writes it to Parquet, a struct ``{bytes, path}`` (or, decoded, a dict
  ``{array, sampling_rate}``).

:data:`FIELDS` lists the accepted names of every role. Each audio column that is not a
completion's is one *rendering* of the prompt (the paper reportedly has three per item); the
spoken prompt of a rendering is its timed words.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from jaxtyping import Float
from torch import Tensor

from speech_interp.speech.alignments import AlignmentError, WordSpan
from speech_interp.speech.audio import prepare_waveform

# role -> accepted column names, first match wins (sources in the module docstring)
FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "item_id", "idx", "index", "uid"),
    "category": ("category", "categories", "topic", "domain", "subject"),
    "prompt": ("prompt_text", "mutual_text", "prompt_str", "text", "question", "sentence"),
    "correct": ("correct", "correct_text", "chosen_text", "answer", "correct_completion",
                "completion", "target"),
    "counterfactual": ("counterfactual", "counterfactual_text", "incorrect", "incorrect_text",
                       "rejected_text", "incorrect_completion", "distractor", "wrong"),
    "timings": ("aligned_text", "word_timings", "alignment", "alignments", "timestamps",
                "words"),
}  # fmt: skip
# audio columns that hold a completion, not the prompt: role -> names
COMPLETION_AUDIO: dict[str, tuple[str, ...]] = {
    "correct": ("chosen", "correct_audio", "correct"),
    "counterfactual": ("rejected", "incorrect_audio", "incorrect", "counterfactual_audio"),
}
WORD_KEYS, START_KEYS, END_KEYS = (
    ("word", "text", "token"),
    ("start_time", "start"),
    (
        "end_time",
        "end",
    ),
)


class FactSetError(ValueError):
    """A fact set cannot be read: the message names the file, row and field."""


@dataclass(frozen=True)
class Rendering:
    """One audio rendering of a prompt: 16 kHz mono samples and its timed words."""

    name: str
    wave: Float[Tensor, " samples"] = field(repr=False)
    words: tuple[WordSpan, ...]


@dataclass(frozen=True)
class FactItem:
    """One fact: its spoken prompt (every rendering), the correct and the same-category
    counterfactual completion (texts; audio where the set has it), and its category."""

    id: str
    category: str
    prompt: str
    correct: str
    counterfactual: str
    renderings: tuple[Rendering, ...]
    completion_audio: dict[str, Float[Tensor, " samples"]] = field(default_factory=dict, repr=False)


def read_table(source: str | Path) -> tuple[pd.DataFrame, str]:
    """The rows of a fact set and a name for messages: a ``.parquet`` file, a directory of
    them (``data/*.parquet`` too), a ``datasets.save_to_disk`` directory, or ``hf:<repo>``."""
    src = str(source)
    if src.startswith("hf:"):
        import datasets

        try:
            ds = datasets.load_dataset(src[3:], split="train")
        except Exception as exc:  # no network, no such repo: say which and why
            raise FactSetError(f"cannot load {src} from the Hugging Face Hub: {exc}") from exc
        return ds.with_format("pandas")[:], src
    path = Path(src)
    if not path.exists():
        raise FactSetError(f"fact set not found: {path}")
    if path.is_file():
        return pd.read_parquet(path), str(path)
    files = sorted(path.glob("*.parquet")) or sorted(path.glob("data/*.parquet"))
    if files:
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True), str(path)
    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        import datasets

        ds = datasets.load_from_disk(str(path))
        ds = ds["train"] if isinstance(ds, datasets.DatasetDict) else ds
        return ds.with_format("pandas")[:], str(path)
    raise FactSetError(f"{path}: no .parquet files (nor data/*.parquet) and not a datasets dir")


def read_factset(source: str | Path, *, strict: bool = True) -> list[FactItem]:
    """Every row of a fact set as a :class:`FactItem` (field rules in the module docstring).

    ``strict``: the timed words of every rendering must be the prompt text's words (case and
    punctuation aside); False accepts a mismatch (the timed words are the spoken prompt)."""
    table, name = read_table(source)
    cols = list(table.columns)
    audio = [c for c in cols if _is_audio(table[c])]
    plain = [c for c in cols if c not in audio]
    roles = {role: _column(plain, names) for role, names in FIELDS.items()}
    missing = [r for r in ("prompt", "correct", "counterfactual", "category") if not roles[r]]
    completion = {r: _column(audio, names) for r, names in COMPLETION_AUDIO.items()}
    prompt_audio = [c for c in audio if c not in completion.values()]
    if not prompt_audio:
        missing.append("prompt audio")
    if missing:
        raise FactSetError(
            f"{name}: no column for {', '.join(missing)}; columns found: {', '.join(cols)} "
            f"(accepted names: speech_interp.data.factset.FIELDS)"
        )
    items = []
    for i, row in enumerate(table.to_dict(orient="records")):
        where = f"{name} row {i}"
        renderings = []
        for col in prompt_audio:
            timing_col = (
                _column(cols, (f"{col}_aligned_text", f"{col}_word_timings")) or roles["timings"]
            )
            if timing_col is None:
                raise FactSetError(f"{where}: no word timings for audio column {col!r}")
            words = _timed_words(row[timing_col], f"{where} {timing_col!r}")
            if strict and _norm(" ".join(w.word for w in words)) != _norm(row[roles["prompt"]]):
                raise FactSetError(
                    f"{where}: the timed words of {col!r} are "
                    f"{[w.word for w in words]}, the prompt text is {row[roles['prompt']]!r} "
                    "(strict=False takes the timed words as the spoken prompt)"
                )
            renderings.append(Rendering(col, _wave(row[col], f"{where} {col!r}"), words))
        items.append(
            FactItem(
                id=str(row[roles["id"]]) if roles["id"] else f"fact-{i:04d}",
                category=_text(row[roles["category"]], f"{where} category"),
                prompt=_text(row[roles["prompt"]], f"{where} prompt"),
                correct=_text(row[roles["correct"]], f"{where} correct completion"),
                counterfactual=_text(row[roles["counterfactual"]], f"{where} counterfactual"),
                renderings=tuple(renderings),
                completion_audio={
                    r: _wave(row[c], f"{where} {c!r}") for r, c in completion.items() if c
                },
            )
        )
    return items


def _column(cols: Sequence[str], names: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in cols}
    return next((lower[n] for n in names if n in lower), None)


def _is_audio(series: pd.Series) -> bool:
    value = next((v for v in series if v is not None), None)
    return isinstance(value, dict) and ({"bytes", "path"} <= set(value) or "array" in value)


def _text(value, where: str) -> str:
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise FactSetError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", str(text).lower()).split())


def _pick(entry: dict, keys: Sequence[str], what: str, where: str):
    for k in keys:
        if k in entry and entry[k] is not None:
            return entry[k]
    raise FactSetError(f"{where}: a timing entry has no {what} (keys {sorted(entry)})")


def _timed_words(value, where: str) -> tuple[WordSpan, ...]:
    """sTinyStories' ``aligned_text`` (structs read by name) or (word, start, end) triples."""
    if value is None or len(value) == 0:
        raise FactSetError(f"{where}: no timed words")
    words = []
    for entry in value:
        if isinstance(entry, dict):
            word = _pick(entry, WORD_KEYS, "word", where)
            start = _pick(entry, START_KEYS, "start time", where)
            end = _pick(entry, END_KEYS, "end time", where)
        elif len(entry) == 3:  # slamkit's (word, start, end)
            word, start, end = entry
        else:
            raise FactSetError(f"{where}: a timing entry must be a struct or a triple: {entry!r}")
        try:
            words.append(WordSpan(str(word).strip(), float(start), float(end)))
        except (AlignmentError, ValueError) as exc:
            raise FactSetError(f"{where}: {exc}") from exc
    return tuple(words)


def _wave(value, where: str) -> Float[Tensor, " samples"]:
    """An HF Audio value (``{bytes, path}`` as stored in Parquet, or a decoded
    ``{array, sampling_rate}``) as 16 kHz mono float32."""
    import soundfile as sf

    if not isinstance(value, dict):
        raise FactSetError(f"{where}: not an audio value: {type(value).__name__}")
    try:
        if value.get("array") is not None:
            rates = (value.get("sampling_rate"), value.get("sample_rate"))  # both are published
            rate = next((r for r in rates if r is not None), None)
            if rate is None:
                raise FactSetError(f"{where}: decoded audio without a sampling rate")
            wave, rate = np.array(value["array"], dtype=np.float32), int(rate)  # a writable copy
        elif value.get("bytes") is not None:
            wave, rate = sf.read(io.BytesIO(value["bytes"]), dtype="float32", always_2d=False)
        else:
            raise FactSetError(f"{where}: audio value has neither bytes nor array")
        return prepare_waveform(wave, rate, channel=0, channels_last=True)
    except FactSetError:
        raise
    except Exception as exc:
        raise FactSetError(f"{where}: cannot decode the audio: {exc}") from exc


__all__ = [
    "COMPLETION_AUDIO",
    "FIELDS",
    "FactItem",
    "FactSetError",
    "Rendering",
    "read_factset",
    "read_table",
]
