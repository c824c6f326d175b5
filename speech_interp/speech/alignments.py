"""Word-level time alignments (TextGrid, CTM, TSV) and their mapping onto unit indices."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .audio import AudioError
from .units import UnitSequence

_SUFFIXES = {".textgrid": "textgrid", ".ctm": "ctm", ".tsv": "tsv"}

# Labels aligners write for silence and pauses, not words: skipped (P2FA/FAVE "sp", "sil";
# Kaldi/MFA "<sil>", "SIL"; BAS "<p:>"; empty intervals). Pass silence= to read_alignment to
# change the list.
SILENCE_LABELS = frozenset({"", "sp", "sil", "<sil>", "SIL", "<p:>"})
# Labels for words the aligner did not know (MFA 1.x "<unk>"): kept as spoken words (their units
# are real speech) but without a text target (speech_interp.data.targets), so lens metrics
# leave them out and count them.
UNKNOWN_LABELS = frozenset({"<unk>", "<UNK>", "[unk]", "<oov>", "<OOV>"})


class AlignmentError(ValueError):
    """An alignment file or word list cannot be used as given."""


@dataclass(frozen=True)
class WordSpan:
    """A word and its time span ``[start, end)`` in seconds."""

    word: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if not isinstance(self.word, str) or not self.word.strip():
            raise AlignmentError(
                f"word label must be a non-empty string, got {self.word!r} "
                f"at [{self.start}, {self.end}]"
            )
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise AlignmentError(
                f"word {self.word!r} has non-finite times [{self.start}, {self.end}]"
            )
        if self.start < 0:
            raise AlignmentError(f"word {self.word!r} starts before 0 s (start={self.start})")
        if self.end <= self.start:
            raise AlignmentError(
                f"word {self.word!r} must end after it starts (start={self.start}, end={self.end})"
            )


def read_alignment(
    path: str | Path,
    fmt: str | None = None,
    *,
    tier: str | None = None,
    utterance: str | None = None,
    speaker: str | None = None,
    channel: str | None = None,
    silence: frozenset[str] | set[str] = SILENCE_LABELS,
) -> list[WordSpan]:
    """Read word spans from a Praat TextGrid, CTM or TSV file, sorted by start time.

    Labels in ``silence`` (default :data:`SILENCE_LABELS`) are pauses, not words, and are
    skipped; unknown-word labels (:data:`UNKNOWN_LABELS`) are kept. Files may be UTF-8 (with or
    without BOM) or UTF-16 with BOM, with LF or CRLF line ends. A word tier whose labels hold
    several words (a sentence or phrase tier) is refused.

    ``fmt`` ("textgrid", "ctm" or "tsv") defaults to the file suffix. TextGrid: the word tier
    is ``tier``, else a tier named "words"/"word", else the only interval tier; intervals with
    an empty label mark silence (not words) and are skipped. CTM: ``utt channel start duration
    word [conf]`` per line (``;;`` comments allowed); a file with several utterances needs
    ``utterance``, one with several channels of the utterance ``channel``. Multi-speaker
    TextGrids (FAVE / MFA tiers "SPEAKER - words"): ``speaker=`` picks that speaker's word tier.
    TSV: a header row with (at least) the columns ``word``, ``start``, ``end``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"alignment file not found: {path}")
    if fmt is None:
        fmt = _SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise AlignmentError(
                f"cannot tell the alignment format of {path} from its suffix; pass fmt= one of "
                f"{sorted(set(_SUFFIXES.values()))}"
            )
    fmt = fmt.lower()
    for name, value, only in (
        ("utterance", utterance, "ctm"), ("channel", channel, "ctm"),
        ("tier", tier, "textgrid"), ("speaker", speaker, "textgrid"),
    ):  # fmt: skip
        if value is not None and fmt != only:
            raise AlignmentError(f"{name}= only applies to {only} files, not {fmt}")
    if fmt == "textgrid":
        words = _read_textgrid(path, tier, speaker)
    elif fmt == "ctm":
        words = _read_ctm(path, utterance, channel)
    elif fmt == "tsv":
        words = _read_tsv(path)
    else:
        raise AlignmentError(f"unknown alignment format {fmt!r}; use textgrid, ctm or tsv")
    words = [w for w in words if w.word not in silence]
    if not words:
        raise AlignmentError(f"{path}: no words found (silence labels skipped: {sorted(silence)})")
    phrases = [w.word for w in words if len(w.word.split()) > 1]
    if phrases:
        raise AlignmentError(
            f"{path}: {len(phrases)} label(s) hold several words (e.g. {phrases[0]!r}); this is "
            "a sentence or phrase tier, not a word tier (TextGrid: pass tier= or speaker=)"
        )
    return sorted(words, key=lambda w: (w.start, w.end))


def _text(path: Path) -> str:
    """A text file as str: UTF-16 with BOM, else UTF-8 (BOM allowed); CRLF becomes LF."""
    raw = path.read_bytes()
    utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
    try:
        text = raw.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as err:
        raise AlignmentError(f"{path}: not UTF-8 or UTF-16 with BOM ({err})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


UNIT_WORD_RULES = ("midpoint", "end")


def word_unit_spans(
    words: list[WordSpan],
    units: UnitSequence,
    *,
    duration: float | None = None,
    rule: str = "midpoint",
) -> list[tuple[int, int]]:
    """For each word, the half-open range ``[i, j)`` of unit indices that belong to it.

    Rules: ``midpoint`` (default): a unit belongs to the word whose interval ``[start, end)``
    contains the unit's temporal midpoint ``(starts + ends) / 2``. ``end`` (slamkit's, used for
    SIMS; ``_create_interleaved_text`` bisects the cumulative end times of the deduplicated
    runs): a unit belongs to the word whose interval ``(start, end]`` contains the unit's end
    time. Units in no word (silence) belong to none. Words must be in time order and must not
    overlap. A word that ends past
    the audio (``duration``, or the last unit's end when ``None``; one frame of tolerance)
    raises AudioError, and a word that receives no unit raises ValueError.
    """
    if len(units) == 0:
        raise ValueError("word_unit_spans got an empty unit sequence")
    frame = 1.0 / units.frame_rate
    limit = float(units.ends[-1]) if duration is None else float(duration)
    source = "the units" if duration is None else "the audio"
    for prev, word in zip(words[:-1], words[1:], strict=True):
        if word.start < prev.end - 1e-9:
            raise AlignmentError(
                f"word {word.word!r} [{word.start:.3f}, {word.end:.3f}] overlaps or precedes "
                f"word {prev.word!r} [{prev.start:.3f}, {prev.end:.3f}]; words must be in "
                "time order and must not overlap"
            )
    if rule not in UNIT_WORD_RULES:
        raise ValueError(f"rule must be one of {UNIT_WORD_RULES}, got {rule!r}")
    if rule == "midpoint":
        times, side = ((units.starts.double() + units.ends.double()) / 2).contiguous(), "left"
    else:
        times, side = units.ends.double().contiguous(), "right"
    spans: list[tuple[int, int]] = []
    for word in words:
        if word.end > limit + frame + 1e-9:
            raise AudioError(
                f"word {word.word!r} [{word.start:.3f}, {word.end:.3f}] ends after the end of "
                f"{source} at {limit:.3f} s (tolerance one frame, {frame:.3f} s)"
            )
        bounds = torch.tensor([word.start, word.end], dtype=torch.float64)
        if rule == "end":  # float32 unit times: a unit ending on a boundary ends there
            bounds = bounds + 1e-6
        i, j = (int(k) for k in torch.searchsorted(times, bounds, side=side))
        if j <= i:
            raise ValueError(
                f"word {word.word!r} [{word.start:.3f}, {word.end:.3f}] contains no unit "
                f"{'midpoint' if rule == 'midpoint' else 'end time'}; it is shorter than the "
                "units around it. Use no_dedup / "
                "extract_units(..., dedup=False) for frame-level units, or a longer span"
            )
        spans.append((i, j))
    return spans


def _read_textgrid(path: Path, tier: str | None, speaker: str | None) -> list[WordSpan]:
    import tempfile

    from praatio import textgrid
    from praatio.utilities.constants import INTERVAL_TIER

    text = _text(path)
    try:
        with tempfile.TemporaryDirectory() as tmp:  # praatio reads a path: hand it clean UTF-8
            plain = Path(tmp) / "in.TextGrid"
            plain.write_text(text, encoding="utf-8")
            tg = textgrid.openTextgrid(str(plain), includeEmptyIntervals=False)
    except Exception as exc:  # praatio raises assorted types for malformed files
        raise AlignmentError(f"could not read TextGrid {path}: {exc}") from exc
    names = list(tg.tierNames)
    interval = [n for n in names if tg.getTier(n).tierType == INTERVAL_TIER]
    if speaker is not None:
        if tier is not None:
            raise AlignmentError("give tier= or speaker=, not both")
        wanted = {f"{speaker} - words", f"{speaker} - word"}
        found = [n for n in interval if n.strip() in wanted]
        if not found:
            raise AlignmentError(
                f"{path}: no word tier for speaker {speaker!r} (looked for "
                f"'{speaker} - words'); tiers are {names}"
            )
        tier = found[0]
    if tier is None:
        by_lower = {n.lower(): n for n in interval}
        tier = by_lower.get("words") or by_lower.get("word")
        if tier is None and len(interval) == 1:
            tier = interval[0]
        if tier is None:
            speakers = sorted({n.split(" - ")[0] for n in interval if " - " in n})
            hint = f" or speaker= (one of {speakers})" if speakers else ""
            raise AlignmentError(
                f"{path}: cannot pick the word tier among interval tiers {interval}; pass tier="
                f"{hint}"
            )
    elif tier not in names:
        raise AlignmentError(f"{path}: no tier named {tier!r}; tiers are {names}")
    elif tier not in interval:
        raise AlignmentError(f"{path}: tier {tier!r} is a point tier, not an interval tier")
    words = []
    for start, end, label in tg.getTier(tier).entries:
        if not label.strip():
            continue  # empty label = silence, not a word
        try:
            words.append(WordSpan(label.strip(), float(start), float(end)))
        except AlignmentError as exc:
            raise AlignmentError(f"{path}: tier {tier!r}: {exc}") from exc
    return words


def _read_ctm(path: Path, utterance: str | None, channel: str | None) -> list[WordSpan]:
    rows: dict[str, dict[str, list[WordSpan]]] = {}
    for lineno, line in enumerate(_text(path).split("\n"), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        where = f"{path}:{lineno}"
        if len(fields) not in (5, 6):
            raise AlignmentError(
                f"{where}: expected 'utt channel start duration word [conf]' "
                f"(5 or 6 fields), got {len(fields)}: {line.strip()!r}"
            )
        utt, chan, start_s, dur_s, word = fields[:5]
        try:
            start, dur = float(start_s), float(dur_s)
        except ValueError:
            raise AlignmentError(
                f"{where}: start {start_s!r} and duration {dur_s!r} must be numbers"
            ) from None
        try:
            span = WordSpan(word, start, start + dur)
        except AlignmentError as exc:
            raise AlignmentError(f"{where}: {exc}") from exc
        rows.setdefault(utt, {}).setdefault(chan, []).append(span)
    if not rows:
        return []
    channels = _choose(rows, utterance, "utterance", f"{path}")
    return _choose(channels, channel, "channel", f"{path}: utterance {utterance!r}")


def _choose(options: dict, value: str | None, what: str, where: str):
    """The option named ``value``; with None, the only one (several is an error naming them)."""
    if value is None:
        if len(options) > 1:
            raise AlignmentError(
                f"{where} holds {len(options)} {what}s ({sorted(options)[:5]}); choose one "
                f"with {what}="
            )
        return next(iter(options.values()))
    if value not in options:
        raise AlignmentError(f"{where}: {what} {value!r} not found; {what}s are {sorted(options)}")
    return options[value]


def _read_tsv(path: Path) -> list[WordSpan]:
    import io

    with io.StringIO(_text(path), newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise AlignmentError(f"{path}: empty file, expected a header with word, start, end")
        header = [h.strip().lower() for h in header]
        missing = [c for c in ("word", "start", "end") if c not in header]
        if missing:
            raise AlignmentError(f"{path}:1: header {header} lacks column(s) {missing}")
        col = {c: header.index(c) for c in ("word", "start", "end")}
        words = []
        for row in reader:
            lineno = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}:{lineno}"
            if len(row) != len(header):
                raise AlignmentError(
                    f"{where}: expected {len(header)} tab-separated fields, got {len(row)}"
                )
            try:
                start, end = float(row[col["start"]]), float(row[col["end"]])
            except ValueError:
                raise AlignmentError(
                    f"{where}: start {row[col['start']]!r} and end {row[col['end']]!r} "
                    "must be numbers"
                ) from None
            try:
                words.append(WordSpan(row[col["word"]].strip(), start, end))
            except AlignmentError as exc:
                raise AlignmentError(f"{where}: {exc}") from exc
    return words
