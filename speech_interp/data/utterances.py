"""The utterance file format that ``--data`` accepts (organism evaluation set or your own units).

JSON Lines. The first line is a header, every further line one utterance::

    {"format": "speech-interp-utterances", "version": 1, "family": "organism", "n_units": 64}
    {"id": "eval-0001", "voice": "en-us_r140", "split": "eval",
     "words": [{"word": "the", "units": [3, 17, 9], "modality": "speech",
                "category": "det", "content": false}, ...]}

Optional per utterance: ``"seen_in_training": true`` marks a sentence the model was trained on
(the organism's fact probes): analyses use held-out sentences by default and report seen ones
apart (:func:`select_sentences`).

Per word: ``word`` (text, non-empty), ``modality`` ("speech" needs ``units``, a non-empty list of
deduplicated unit ids; "text" needs none), optional ``category`` (used to pick matched controls)
and ``content`` (content word or function word; default true). ``family`` and ``n_units`` in the
header are optional; when given, unit ids are checked against ``n_units`` on reading.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from speech_interp.data.prompt import Prompt, build_prompt
from speech_interp.hooks import TokenLayout

FORMAT = "speech-interp-utterances"
VERSION = 1
SEEN = "seen_in_training"
SENTENCES = ("heldout", "seen", "all")


class DataFormatError(ValueError):
    """A data file does not follow the utterance format; the message names file, line, field."""


@dataclass(frozen=True)
class Word:
    word: str
    modality: str = "speech"
    units: tuple[int, ...] | None = None
    category: str | None = None
    content: bool = True


@dataclass(frozen=True)
class Utterance:
    id: str
    words: tuple[Word, ...]
    voice: str | None = None
    split: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)

    def to_prompt(self, layout: TokenLayout, tokenizer, **kw) -> Prompt:
        """Build the prompt (markers at modality switches, BOS) for this utterance."""
        return build_prompt(
            layout,
            tokenizer,
            [w.word for w in self.words],
            [w.modality for w in self.words],
            [list(w.units) if w.units is not None else None for w in self.words],
            **kw,
        )


def _word(raw: dict, where: str, n_units: int | None) -> Word:
    if not isinstance(raw, dict):
        raise DataFormatError(f"{where}: a word must be an object, got {type(raw).__name__}")
    text = raw.get("word")
    if not isinstance(text, str) or not text.strip():
        raise DataFormatError(f"{where}: missing or empty 'word'")
    modality = raw.get("modality", "speech")
    if modality not in ("speech", "text"):
        raise DataFormatError(f"{where} ({text!r}): modality must be 'speech' or 'text'")
    units = raw.get("units")
    if modality == "speech":
        if not isinstance(units, list) or not units:
            raise DataFormatError(f"{where} ({text!r}): a spoken word needs a non-empty 'units'")
        if not all(isinstance(u, int) and not isinstance(u, bool) for u in units):
            raise DataFormatError(f"{where} ({text!r}): 'units' must be integers")
        bad = [u for u in units if u < 0 or (n_units is not None and u >= n_units)]
        if bad:
            raise DataFormatError(
                f"{where} ({text!r}): unit id {bad[0]} out of range 0..{(n_units or 0) - 1}"
            )
    content = raw.get("content", True)
    if not isinstance(content, bool):
        raise DataFormatError(f"{where} ({text!r}): 'content' must be true or false")
    if not isinstance(raw.get("category"), (str, type(None))):
        raise DataFormatError(f"{where} ({text!r}): 'category' must be a string")
    return Word(
        word=text,
        modality=modality,
        units=tuple(units) if units is not None else None,
        category=raw.get("category"),
        content=content,
    )


def read_utterances(path: str | Path) -> tuple[dict, list[Utterance]]:
    """Read a data file: (header, utterances). Errors name the file, line and field."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not UTF-8 text ({err})") from None
    numbered = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if not numbered:
        raise DataFormatError(f"{path}: empty data file")
    first, head = numbered[0]
    try:
        header = json.loads(head)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}:{first}: not JSON ({err})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DataFormatError(f"{path}:{first}: header must have format={FORMAT!r} (an object)")
    n_units = header.get("n_units")
    if n_units is not None and (not isinstance(n_units, int) or isinstance(n_units, bool)
                                or n_units < 1):  # fmt: skip
        raise DataFormatError(f"{path}:{first}: 'n_units' must be a positive integer")
    utterances, seen = [], {}
    for lineno, line in numbered[1:]:
        where = f"{path}:{lineno}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{where}: not JSON ({err})") from None
        if not isinstance(raw, dict) or "id" not in raw or "words" not in raw:
            raise DataFormatError(f"{where}: an utterance must be an object with 'id' and 'words'")
        for key in ("voice", "split"):
            if not isinstance(raw.get(key), (str, type(None))):
                raise DataFormatError(f"{where}: '{key}' must be a string")
        if not isinstance(raw.get(SEEN, False), bool):
            raise DataFormatError(f"{where}: '{SEEN}' must be true or false")
        uid = str(raw["id"])
        if uid in seen:
            raise DataFormatError(f"{where}: utterance id {uid!r} already used on line {seen[uid]}")
        seen[uid] = lineno
        if not isinstance(raw["words"], list) or not raw["words"]:
            raise DataFormatError(f"{where}: 'words' must be a non-empty list")
        words = tuple(_word(w, f"{where} word {i}", n_units) for i, w in enumerate(raw["words"]))
        extra = {k: v for k, v in raw.items() if k not in ("id", "words", "voice", "split")}
        utterances.append(
            Utterance(str(raw["id"]), words, raw.get("voice"), raw.get("split"), extra)
        )
    if not utterances:
        raise DataFormatError(f"{path}: the file holds a header but no utterances")
    return header, utterances


def write_utterances(
    path: str | Path,
    utterances: Iterable[Utterance],
    *,
    family: str | None = None,
    n_units: int | None = None,
) -> Path:
    """Write utterances in the format above (atomically: all or nothing)."""
    from speech_interp.artifacts import atomic_path

    path = Path(path)
    header = {"format": FORMAT, "version": VERSION, "family": family, "n_units": n_units}
    with atomic_path(path) as tmp, tmp.open("w") as fh:
        fh.write(json.dumps(header) + "\n")
        for utt in utterances:
            words = []
            for w in utt.words:
                d = asdict(w)
                d["units"] = list(w.units) if w.units is not None else None
                words.append(d)
            rec = {"id": utt.id, "voice": utt.voice, "split": utt.split, "words": words}
            rec.update(utt.meta)
            fh.write(json.dumps(rec) + "\n")
    return path


def utterance_from_units(
    words: Sequence[str], units: Sequence[Sequence[int]], *, id: str = "utt"
) -> Utterance:
    """A spoken utterance from pre-tokenized speech (per-word unit lists), any family."""
    if len(words) != len(units):
        raise ValueError(f"{len(words)} words but {len(units)} unit lists")
    return Utterance(
        id, tuple(Word(w, "speech", tuple(u)) for w, u in zip(words, units, strict=True))
    )


class UnknownSplit(ValueError):
    """A split that no utterance of the data has."""


def select_split(utterances: Sequence[Utterance], split: str | None) -> list[Utterance]:
    """The utterances whose ``split`` is ``split`` (all when None); none found is an error."""
    if split is None:
        return list(utterances)
    chosen = [u for u in utterances if u.split == split]
    if not chosen:
        have = sorted({str(u.split) for u in utterances})
        raise UnknownSplit(f"no utterance has split {split!r}; the data has splits {have}")
    return chosen


def is_seen(utterance: Utterance) -> bool:
    """Whether the data marks this sentence as one the model was trained on."""
    return utterance.meta.get(SEEN) is True


def select_sentences(utterances: Sequence[Utterance], which: str = "heldout") -> list[Utterance]:
    """``heldout``: sentences not marked ``seen_in_training``; ``seen``: the marked ones;
    ``all``: both. An empty selection is an error that says how many of each the data holds."""
    if which not in SENTENCES:
        raise ValueError(f"sentences must be one of {', '.join(SENTENCES)}, got {which!r}")
    chosen = [u for u in utterances if which == "all" or is_seen(u) == (which == "seen")]
    if not chosen:
        n_seen = sum(is_seen(u) for u in utterances)
        raise UnknownSplit(
            f"no {which} sentence: the data holds {len(utterances) - n_seen} held-out and "
            f"{n_seen} seen_in_training sentences"
        )
    return chosen
