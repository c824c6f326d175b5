"""Bad input fuzzing (hypothesis, bounded): the utterance-file and alignment readers, given
truncated, byte-flipped, retyped, oversized or duplicated input, either read it correctly or
raise their own named error (DataFormatError / AlignmentError) that says where; never an
exception from deep inside json, csv, praatio or torch."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speech_interp.data import DataFormatError, read_utterances
from speech_interp.speech import AlignmentError, read_alignment

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
HEADER = {"format": "speech-interp-utterances", "version": 1, "family": "organism", "n_units": 64}
UTTERANCE = {"id": "u1", "voice": "v", "split": "eval",
             "words": [{"word": "the", "units": [3, 17], "modality": "speech"},
                       {"word": "cat", "modality": "text", "category": "noun"}]}  # fmt: skip
VALID = (json.dumps(HEADER) + "\n" + json.dumps(UTTERANCE) + "\n").encode()
TSV = b"word\tstart\tend\nthe\t0.10\t0.40\ncat\t0.45\t0.90\n"
CTM = b";; c\nutt1 A 0.10 0.30 the 0.9\nutt1 A 0.45 0.40 cat\n"
TEXTGRID = (
    b'File type = "ooTextFile"\nObject class = "TextGrid"\n\n0\n1.2\n<exists>\n1\n'
    b'"IntervalTier"\n"words"\n0\n1.2\n2\n0.1\n0.4\n"the"\n0.45\n0.9\n"cat"\n'
)


def mutate(data: bytes, draw) -> bytes:
    """Truncate, flip bytes, insert junk, or duplicate lines."""
    kind = draw(st.sampled_from(["cut", "flip", "insert", "duplicate", "empty-lines"]))
    if kind == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "flip":
        out = bytearray(data)
        for i in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
            out[i] = draw(st.integers(0, 255))
        return bytes(out)
    if kind == "insert":
        at = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b"null", b"[1, 2]", b'"x"', b"1e309", b"-5", b"\xff\xfe",
                                     b"99999999999999999999", b"{}", b"\t\t", b"NaN"]))  # fmt: skip
        return data[:at] + junk + data[at:]
    if kind == "duplicate":
        lines = data.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        return b"".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
    return data.replace(b"\n", b"\n\n")


@SETTINGS
@given(st.data())
def test_utterance_reader(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "utts.jsonl"
    path.write_bytes(mutate(VALID, data.draw))
    try:
        header, utterances = read_utterances(path)
    except DataFormatError as err:
        assert str(path) in str(err)
        return
    assert isinstance(header, dict) and utterances
    for utt in utterances:
        for word in utt.words:
            assert word.modality in ("speech", "text")
            if word.modality == "speech":
                assert word.units and all(0 <= u < 64 for u in word.units)


@SETTINGS
@given(st.data(), st.sampled_from([("a.tsv", TSV), ("a.ctm", CTM), ("a.TextGrid", TEXTGRID)]))
def test_alignment_readers(tmp_path_factory, data, case):
    name, valid = case
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(mutate(valid, data.draw))
    try:
        words = read_alignment(path)
    except AlignmentError:
        return
    assert words and all(0 <= w.start < w.end for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
