"""Word alignments: readers and the word -> unit-span mapping."""

import pytest
import torch
from praatio import textgrid

from speech_interp.speech import (
    AlignmentError,
    AudioError,
    UnitSequence,
    WordSpan,
    dedup_units,
    no_dedup,
    read_alignment,
    word_unit_spans,
)


def test_wordspan_validation():
    with pytest.raises(AlignmentError, match="non-empty"):
        WordSpan("  ", 0.0, 1.0)
    with pytest.raises(AlignmentError, match="'cat' must end after it starts"):
        WordSpan("cat", 1.0, 1.0)
    with pytest.raises(AlignmentError, match="'cat' starts before 0"):
        WordSpan("cat", -0.1, 1.0)


def write_textgrid(path, tiers):
    tg = textgrid.Textgrid()
    for name, entries in tiers.items():
        tg.addTier(textgrid.IntervalTier(name, entries, 0.0, 1.0))
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True)


def test_textgrid_words_tier_skips_silence(tmp_path):
    path = tmp_path / "a.TextGrid"
    words = [(0.1, 0.4, "hello"), (0.5, 0.9, "world")]
    phones = [(0.1, 0.2, "HH"), (0.2, 0.4, "AH")]
    write_textgrid(path, {"phones": phones, "words": words})
    got = read_alignment(path)
    assert got == [WordSpan("hello", 0.1, 0.4), WordSpan("world", 0.5, 0.9)]
    assert [w.word for w in read_alignment(path, tier="phones")] == ["HH", "AH"]
    with pytest.raises(AlignmentError, match="no tier named 'x'"):
        read_alignment(path, tier="x")


def test_textgrid_needs_tier_when_ambiguous(tmp_path):
    path = tmp_path / "b.TextGrid"
    write_textgrid(path, {"one": [(0.1, 0.2, "a")], "two": [(0.1, 0.2, "b")]})
    with pytest.raises(AlignmentError, match="pass tier="):
        read_alignment(path)
    single = tmp_path / "c.TextGrid"
    write_textgrid(single, {"tokens": [(0.1, 0.2, "a")]})
    assert read_alignment(single) == [WordSpan("a", 0.1, 0.2)]


def test_ctm(tmp_path):
    path = tmp_path / "a.ctm"
    path.write_text(";; comment\nutt1 1 0.10 0.30 hello 0.9\n\nutt1 1 0.50 0.40 world\n")
    assert read_alignment(path) == [WordSpan("hello", 0.1, 0.4), WordSpan("world", 0.5, 0.9)]


def test_ctm_multiple_utterances(tmp_path):
    path = tmp_path / "a.ctm"
    path.write_text("u1 1 0.1 0.3 hi\nu2 A 0.0 0.2 yo\n")
    with pytest.raises(AlignmentError, match="2 utterances.*utterance="):
        read_alignment(path)
    assert read_alignment(path, utterance="u2") == [WordSpan("yo", 0.0, 0.2)]
    with pytest.raises(AlignmentError, match="utterance 'u3' not found"):
        read_alignment(path, utterance="u3")


def test_ctm_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / "bad.ctm"
    path.write_text("u1 1 0.1 0.3 hi\nu1 1 0.5 word\n")
    with pytest.raises(AlignmentError, match=r"bad\.ctm:2: expected .*got 4"):
        read_alignment(path)
    path.write_text("u1 1 0.1 0.3 hi\nu1 1 abc 0.3 there\n")
    with pytest.raises(AlignmentError, match=r"bad\.ctm:2: start 'abc'"):
        read_alignment(path)
    path.write_text("u1 1 0.1 -0.3 hi\n")
    with pytest.raises(AlignmentError, match=r"bad\.ctm:1: word 'hi' must end after"):
        read_alignment(path)


def test_tsv(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("start\tend\tword\tspeaker\n0.5\t0.9\tworld\ts\n0.1\t0.4\thello\ts\n")
    assert read_alignment(path) == [WordSpan("hello", 0.1, 0.4), WordSpan("world", 0.5, 0.9)]


def test_tsv_errors(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("word\tbegin\tend\nhi\t0.1\t0.2\n")
    with pytest.raises(AlignmentError, match=r"a\.tsv:1: .*lacks column\(s\) \['start'\]"):
        read_alignment(path)
    path.write_text("word\tstart\tend\nhi\t0.1\t0.2\nyo\tx\t0.5\n")
    with pytest.raises(AlignmentError, match=r"a\.tsv:3: start 'x'"):
        read_alignment(path)


def test_unknown_suffix_and_missing(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("{}")
    with pytest.raises(AlignmentError, match="pass fmt="):
        read_alignment(path)
    with pytest.raises(FileNotFoundError, match="nope.ctm"):
        read_alignment(tmp_path / "nope.ctm")


# units at 25 Hz: [5,5,7,7,7,5,9,9,9,9] -> units 5 [0,.08) 7 [.08,.2) 5 [.2,.24) 9 [.24,.4)
FRAMES = torch.tensor([5, 5, 7, 7, 7, 5, 9, 9, 9, 9])


def test_midpoint_rule():
    units = dedup_units(FRAMES, 25.0)
    words = [WordSpan("a", 0.0, 0.1), WordSpan("b", 0.1, 0.25), WordSpan("c", 0.3, 0.4)]
    # midpoints: 0.04, 0.14, 0.22, 0.32
    assert word_unit_spans(words, units) == [(0, 1), (1, 3), (3, 4)]


def test_end_rule_is_slamkits():
    """slamkit's _create_interleaved_text: bisect the cumulative end times of the runs."""
    from bisect import bisect_left, bisect_right

    import numpy as np

    units = dedup_units(FRAMES, 25.0)
    durations = [2, 3, 1, 4]  # the runs of FRAMES
    unit_time = np.cumsum(durations) * 0.04
    words = [WordSpan("a", 0.0, 0.15), WordSpan("b", 0.15, 0.4)]
    ref = [(bisect_left(unit_time, w.start), bisect_right(unit_time, w.end)) for w in words]
    assert word_unit_spans(words, units, rule="end") == ref == [(0, 1), (1, 4)]
    assert word_unit_spans(words, units) == [(0, 2), (2, 4)]  # midpoints 0.04, 0.14 in "a"
    with pytest.raises(ValueError, match="rule must be one of"):
        word_unit_spans(words, units, rule="start")


def test_word_past_end_of_audio():
    units = dedup_units(FRAMES, 25.0)  # last unit ends at 0.4 s
    with pytest.raises(AudioError, match=r"'late' \[0\.300, 0\.500\] ends after the end"):
        word_unit_spans([WordSpan("late", 0.3, 0.5)], units)
    with pytest.raises(AudioError, match=r"end of the audio at 0\.300"):
        word_unit_spans([WordSpan("late", 0.2, 0.39)], units, duration=0.3)
    # within one frame of tolerance is fine
    assert word_unit_spans([WordSpan("ok", 0.3, 0.43)], units) == [(3, 4)]


def test_word_with_no_units_suggests_no_dedup():
    units = dedup_units(FRAMES, 25.0)
    with pytest.raises(ValueError, match=r"'tiny' \[0\.150, 0\.190\] contains no unit.*no_dedup"):
        word_unit_spans([WordSpan("tiny", 0.15, 0.19)], units)
    frames = no_dedup(FRAMES, 25.0)  # midpoints every 0.04 s from 0.02
    assert word_unit_spans([WordSpan("tiny", 0.15, 0.19)], frames) == [(4, 5)]


def test_overlapping_words():
    units = dedup_units(FRAMES, 25.0)
    words = [WordSpan("a", 0.0, 0.2), WordSpan("b", 0.15, 0.3)]
    with pytest.raises(AlignmentError, match="'b' .* overlaps or precedes word 'a'"):
        word_unit_spans(words, units)


def test_empty_units_rejected():
    empty = UnitSequence(
        torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0), frame_rate=25.0
    )
    with pytest.raises(ValueError, match="empty unit sequence"):
        word_unit_spans([WordSpan("a", 0.0, 0.1)], empty)
