"""Clean / corrupted pairs and their position alignment, no model."""

from dataclasses import replace

import pytest
import torch

from speech_interp.data import PairError, Prompt, Utterance, Word, align, make_pairs, validate_pair


def _w(word, units, cat="noun", modality="speech", content=True):
    return Word(word, modality, tuple(units) if units else None, cat, content)


def _utts():
    return [
        Utterance("a", (_w("the", [1], "det", content=False), _w("cat", [2, 3]),
                        _w("sees", [4, 5], "verb")), "v1"),
        Utterance("b", (_w("the", [1], "det", content=False), _w("dog", [6, 7, 8]),
                        _w("eats", [9], "verb")), "v1"),
        Utterance("c", (_w("a", [10], "det", content=False), _w("bird", [11]),
                        _w("eats", [12], "verb")), "v2"),
    ]  # fmt: skip


def test_make_pairs_swaps_one_word_same_voice_and_category():
    utts = _utts()
    pairs = make_pairs(utts, seed=3)
    assert pairs
    by_id = {u.id: u for u in utts}
    for p in pairs:
        i = validate_pair(p.clean, p.corrupt)
        assert i == p.word_index
        donor = by_id[p.donor]
        assert donor.voice == p.clean.voice
        assert p.corrupt_word.category == p.clean_word.category
        assert p.corrupt_word.units == donor.words[p.donor_word_index].units
        assert p.corrupt_word.word == donor.words[p.donor_word_index].word
    # voice v2 has a single noun and a single verb: "c" can never be corrupted
    assert not any(p.clean.id == "c" for p in pairs)
    assert make_pairs(utts, seed=3) == pairs  # seeded
    assert len(make_pairs(utts, seed=3, max_pairs=1)) == 1


def test_make_pairs_without_candidates_is_an_error():
    with pytest.raises(PairError, match="no pair could be made"):
        make_pairs(_utts()[2:], seed=0)
    with pytest.raises(ValueError, match="max_pairs"):
        make_pairs(_utts(), seed=0, max_pairs=0)


def test_validate_pair_rejects_bad_pairs():
    a = _utts()[0]
    two = replace(a, words=(a.words[0], _w("dog", [6]), _w("eats", [9], "verb")))
    with pytest.raises(PairError, match="differs in 2 words"):
        validate_pair(a, two)
    with pytest.raises(PairError, match="differs in 0 words"):
        validate_pair(a, a)
    with pytest.raises(PairError, match="1 vs 3 words|3 vs 1 words"):
        validate_pair(a, replace(a, words=a.words[:1]))
    same_word = replace(a, words=(a.words[0], _w("cat", [9, 9]), a.words[2]))
    with pytest.raises(PairError, match="only its units differ"):
        validate_pair(a, same_word)
    text = replace(a, words=(a.words[0], _w("dog", None, modality="text"), a.words[2]))
    with pytest.raises(PairError, match="must be spoken"):
        validate_pair(a, text)


def _prompt(ids, word_positions):
    ids = torch.tensor(ids)
    pos = tuple(torch.tensor(p) for p in word_positions)
    owner = torch.full((len(ids),), -1)
    for w, p in enumerate(pos):
        owner[p] = w
    return Prompt(ids, ("x",) * len(pos), ("speech",) * len(pos), pos, owner, owner)


def test_align_from_the_word_end():
    # BOS, marker, word0 (1 unit), word1 (3 units clean / 2 corrupt), word2 (2 units)
    clean = _prompt([0, 1, 5, 7, 8, 9, 3, 4], [[2], [3, 4, 5], [6, 7]])
    corrupt = _prompt([0, 1, 5, 17, 18, 3, 4], [[2], [3, 4], [5, 6]])
    al = align(clean, corrupt, 1)
    t = al.table
    word = t[t.region == "word"]
    assert word.offset.tolist() == [-2, -1]  # the longer word's -3 has no partner: skipped
    assert word.clean_position.tolist() == [4, 5] and word.corrupt_position.tolist() == [3, 4]
    after = t[t.region == "after"]
    assert after.offset.tolist() == [1, 2]
    assert after.clean_position.tolist() == [6, 7] and after.corrupt_position.tolist() == [5, 6]
    before = t[t.region == "before"]
    assert (before.clean_position == before.corrupt_position).all() and len(before) == 3
    assert al.cells(max_after=1).offset.tolist() == [-2, -1, 1]
    bad = _prompt([0, 2, 5, 17, 18, 3, 4], [[2], [3, 4], [5, 6]])
    with pytest.raises(PairError, match="differ outside the swapped word"):
        align(clean, bad, 1)
