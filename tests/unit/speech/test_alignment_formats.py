"""Alignment files as the aligners write them (Praat long and short TextGrids, UTF-16 with BOM,
CRLF; P2FA / FAVE silence labels; MFA unknown words and multi-speaker tiers; NIST CTM with a
confidence column, comments and two channels)."""

import pytest

from speech_interp.data import TargetResolver
from speech_interp.hooks import get_family
from speech_interp.speech import UNKNOWN_LABELS, AlignmentError, read_alignment
from speech_interp.testing import tiny_tokenizer


def long_textgrid(tiers: dict[str, list[tuple[float, float, str]]], xmax: float = 1.2) -> str:
    """Praat's long ("ooTextFile") TextGrid text for interval tiers."""
    out = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0",
           f"xmax = {xmax}", "tiers? <exists>", f"size = {len(tiers)}", "item []:"]  # fmt: skip
    for i, (name, intervals) in enumerate(tiers.items(), start=1):
        out += [f"    item [{i}]:", '        class = "IntervalTier"', f'        name = "{name}"',
                "        xmin = 0", f"        xmax = {xmax}",
                f"        intervals: size = {len(intervals)}"]  # fmt: skip
        for j, (a, b, label) in enumerate(intervals, start=1):
            pad = " " * 12
            out += [f"        intervals [{j}]:", f"{pad}xmin = {a}", f"{pad}xmax = {b}",
                    f'{pad}text = "{label}"']  # fmt: skip
    return "\n".join(out) + "\n"


def short_textgrid(name: str, intervals, xmax: float = 1.2) -> str:
    """Praat's short TextGrid text for one interval tier."""
    out = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", str(xmax),
           "<exists>", "1", '"IntervalTier"', f'"{name}"', "0", str(xmax),
           str(len(intervals))]  # fmt: skip
    for a, b, label in intervals:
        out += [str(a), str(b), f'"{label}"']
    return "\n".join(out) + "\n"


P2FA = [(0.0, 0.1, "sil"), (0.1, 0.4, "THE"), (0.4, 0.45, "sp"), (0.45, 0.9, "CAT"),
        (0.9, 1.0, "<sil>"), (1.0, 1.1, ""), (1.1, 1.2, "<p:>")]  # fmt: skip


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("form", ["long", "short"])
def test_textgrids_skip_silence_labels(tmp_path, encoding, newline, form):
    text = long_textgrid({"words": P2FA}) if form == "long" else short_textgrid("words", P2FA)
    path = tmp_path / "p2fa.TextGrid"
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    words = read_alignment(path)
    assert [(w.word, w.start, w.end) for w in words] == [("THE", 0.1, 0.4), ("CAT", 0.45, 0.9)]
    kept = read_alignment(path, silence={""})  # the list is overridable
    assert [w.word for w in kept] == ["sil", "THE", "sp", "CAT", "<sil>", "<p:>"]


def test_mfa_unknown_words_are_kept_without_a_target(tmp_path):
    path = tmp_path / "mfa.TextGrid"
    path.write_text(long_textgrid({"words": [(0.0, 0.3, "the"), (0.3, 0.8, "<unk>")],
                                   "phones": [(0.0, 0.8, "spn")]}))  # fmt: skip
    assert [w.word for w in read_alignment(path)] == ["the", "<unk>"]
    tok = tiny_tokenizer("sims")
    resolver = TargetResolver(tok, get_family("sims").bind(tok))
    assert all(not resolver(label).found for label in UNKNOWN_LABELS)
    assert resolver("the").found


def test_multi_speaker_textgrid(tmp_path):
    path = tmp_path / "fave.TextGrid"
    path.write_text(long_textgrid({
        "Anna - phones": [(0.0, 0.5, "DH")], "Anna - words": [(0.0, 0.5, "hello")],
        "Ben - phones": [(0.5, 1.0, "W")], "Ben - words": [(0.5, 1.0, "world")],
    }))  # fmt: skip
    with pytest.raises(
        AlignmentError, match=r"pass tier= or speaker= \(one of \['Anna', 'Ben'\]\)"
    ):
        read_alignment(path)
    assert [w.word for w in read_alignment(path, speaker="Ben")] == ["world"]
    with pytest.raises(AlignmentError, match="no word tier for speaker 'Cleo'"):
        read_alignment(path, speaker="Cleo")


def test_sentence_tier_is_refused(tmp_path):
    path = tmp_path / "sent.TextGrid"
    path.write_text(long_textgrid({"utterance": [(0.0, 1.2, "the cat sat down")]}))
    with pytest.raises(AlignmentError, match="sentence or phrase tier, not a word tier"):
        read_alignment(path)


def test_ctm_confidence_comments_and_channels(tmp_path):
    path = tmp_path / "sw.ctm"
    path.write_bytes(
        ";; NIST CTM, two channels of one conversation\r\n"
        "sw02001 A 0.10 0.30 hello 0.98\r\n"
        "sw02001 A 0.45 0.25 sil 1.00\r\n"
        "sw02001 B 0.20 0.40 yeah 0.87\r\n"
        "sw02001 A 0.70 0.40 world 0.91\r\n".encode("utf-16")
    )
    with pytest.raises(
        AlignmentError, match=r"2 channels \(\['A', 'B'\]\); choose one with channel="
    ):
        read_alignment(path)
    words = read_alignment(path, channel="A")
    assert [(w.word, w.start) for w in words] == [("hello", 0.1), ("world", 0.7)]
    assert [w.word for w in read_alignment(path, channel="B")] == ["yeah"]
    with pytest.raises(AlignmentError, match="channel 'C' not found"):
        read_alignment(path, channel="C")
    with pytest.raises(AlignmentError, match="channel= only applies to ctm files"):
        read_alignment(tmp_path / "sw.ctm", fmt="tsv", channel="A")


def test_truncated_utf16_is_a_clear_error(tmp_path):
    """A UTF-16 BOM followed by an odd number of bytes (a cut file) names the problem."""
    path = tmp_path / "cut.ctm"
    path.write_bytes("sw02001 A 0.10 0.30 hello 0.98\n".encode("utf-16")[:-1])
    with pytest.raises(AlignmentError, match="not UTF-8 or UTF-16 with BOM"):
        read_alignment(path)
