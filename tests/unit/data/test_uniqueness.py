"""Uniqueness points on a hand-made lexicon (the rule in speech_interp.data.uniqueness)."""

from speech_interp.data import Utterance, Word, uniqueness_points


def _utt(uid, *words):
    return Utterance(uid, tuple(Word(w, "speech", tuple(u)) if u else Word(w, "text")
                                for w, u in words))  # fmt: skip


def test_uniqueness_point_rule():
    utts = [
        _utt("a", ("cat", [1, 2, 3]), ("cap", [1, 2, 4]), ("is", None)),
        _utt("b", ("car", [1, 2]), ("Cat", [1, 2, 3, 5]), ("dog", [7, 8])),
    ]
    (cat, cap, text), (car, cat2, dog) = uniqueness_points(utts)
    assert text is None
    assert (cat.index, cat.unique) == (2, True)  # 1,2 is shared with cap and car
    assert (cap.index, cap.unique) == (2, True)
    assert (car.index, car.unique) == (1, False)  # all of car is the start of cat / cap
    # the same type spoken differently never competes with itself (Cat == cat)
    assert (cat2.index, cat2.unique) == (2, True)
    assert (dog.index, dog.unique) == (0, True)
