import json

import pytest

from speech_interp.data import (
    DataFormatError,
    Utterance,
    Word,
    read_utterances,
    select_split,
    utterance_from_units,
    write_utterances,
)


def _utts():
    return [
        Utterance(
            "u1",
            (
                Word("the", "speech", (1, 2), "function", False),
                Word("cat", "speech", (3,), "animal"),
            ),
            "us-140",
            "eval",
            {"kind": "transitive"},
        ),
        Utterance("u2", (Word("dog", "text", None, "animal"),), None, None),
    ]


def test_round_trip(tmp_path):
    path = write_utterances(tmp_path / "d.jsonl", _utts(), family="organism", n_units=8)
    header, utts = read_utterances(path)
    assert header["n_units"] == 8 and header["family"] == "organism"
    assert utts == _utts()


def _write(tmp_path, words, n_units=8):
    path = tmp_path / "bad.jsonl"
    header = {"format": "speech-interp-utterances", "version": 1, "n_units": n_units}
    path.write_text(json.dumps(header) + "\n" + json.dumps({"id": "x", "words": words}) + "\n")
    return path


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ([{"word": "the", "units": [1, 9]}], "unit id 9 out of range 0..7"),
        ([{"word": "", "units": [1]}], "missing or empty 'word'"),
        ([{"units": [1]}], "missing or empty 'word'"),
        ([{"word": "cat", "units": []}], "needs a non-empty 'units'"),
        ([{"word": "cat"}], "needs a non-empty 'units'"),
        ([{"word": "cat", "modality": "audio", "units": [1]}], "modality must be"),
        ([], "'words' must be a non-empty list"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, words, message):
    with pytest.raises(DataFormatError, match=message):
        read_utterances(_write(tmp_path, words))


def test_empty_and_headerless_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataFormatError, match="empty data file"):
        read_utterances(empty)
    headerless = tmp_path / "h.jsonl"
    headerless.write_text(json.dumps({"id": "x", "words": []}) + "\n")
    with pytest.raises(DataFormatError, match="header must have format"):
        read_utterances(headerless)
    only_header = tmp_path / "o.jsonl"
    only_header.write_text(json.dumps({"format": "speech-interp-utterances"}) + "\n")
    with pytest.raises(DataFormatError, match="no utterances"):
        read_utterances(only_header)


def test_pre_tokenized_units():
    utt = utterance_from_units(["the", "cat"], [[1, 2], [3]])
    assert [w.units for w in utt.words] == [(1, 2), (3,)]
    with pytest.raises(ValueError, match="2 words but 1 unit lists"):
        utterance_from_units(["the", "cat"], [[1]])


def test_select_split():
    utts = _utts()
    assert [u.id for u in select_split(utts, "eval")] == ["u1"]
    assert select_split(utts, None) == utts
    with pytest.raises(ValueError, match=r"no utterance has split 'test'.*\['None', 'eval'\]"):
        select_split(utts, "test")
