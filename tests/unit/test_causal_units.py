"""Pairs, alignment, layer bands, remote checks, rank agreement and the verdict rule, no model."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from speech_interp.attribution import rank_agreement
from speech_interp.data import Utterance, Word
from speech_interp.edits import Edit, _apply, _merge
from speech_interp.interventions import fit_probe, parse_band, random_directions
from speech_interp.pairs import PairError, align, make_pairs, validate_pair
from speech_interp.remote import RemoteError, check_remote, resolve_remote
from speech_interp.speech.prompt import Prompt
from speech_interp.verdict import causal, decide, decodable


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def test_parse_band():
    assert parse_band("1-2", 4) == (1, 2) and parse_band("3", 4) == (3, 3)
    assert parse_band((0, 4), 4) == (0, 4)
    with pytest.raises(ValueError, match="layer band 2-9 out of range"):
        parse_band("2-9", 4)
    with pytest.raises(ValueError, match="out of range"):
        parse_band("3-1", 4)
    with pytest.raises(ValueError, match="must look like"):
        parse_band("two", 4)


def test_edit_rule():
    x = torch.randn(3, 5, 8)
    u = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    e = Edit.project(0, "resid_pre", [0, 2], [1, 4], u)
    y = _apply(x, _merge([e])[(0, "resid_pre")])
    assert torch.allclose((y[0, 1] * u[0]).sum(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose((y[2, 4] * u[1]).sum(), torch.tensor(0.0), atol=1e-6)
    untouched = torch.ones(3, 5, dtype=torch.bool)
    untouched[0, 1] = untouched[2, 4] = False
    assert torch.equal(y[untouched], x[untouched])
    zero = Edit.project(0, "resid_pre", [1], [2], torch.zeros(1, 8))
    assert torch.equal(_apply(x, _merge([zero])[(0, "resid_pre")]), x)
    vals = torch.randn(1, 8)
    s = _apply(x, _merge([Edit.set(0, "mlp_out", [1], [3], vals)])[(0, "mlp_out")])
    assert torch.equal(s[1, 3], vals[0])


@pytest.fixture
def ndif_config(monkeypatch):
    """Restore nnsight's config and the checked-host cache after a test."""
    from nnsight import CONFIG

    import speech_interp.remote as remote

    monkeypatch.setattr(CONFIG.API, "HOST", CONFIG.API.HOST)
    monkeypatch.setattr(CONFIG.API, "APIKEY", CONFIG.API.APIKEY)
    monkeypatch.setattr(remote, "_CHECKED", set())
    return monkeypatch


def test_remote_true_needs_the_key(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(RemoteError, match="NDIF_API_KEY"):
        resolve_remote(True, "nnsight")
    with pytest.raises(ValueError, match="needs the nnsight backend"):
        resolve_remote("local", "tl")
    with pytest.raises(ValueError, match="remote must be"):
        resolve_remote("yes", "nnsight")
    assert resolve_remote("local", "nnsight") == "local"


def test_remote_unreachable_host(ndif_config):
    monkeypatch = ndif_config
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setenv("NDIF_HOST", "http://127.0.0.1:9")  # discard port: refused at once
    with pytest.raises(RemoteError, match=r"NDIF host http://127.0.0.1:9 is unreachable"):
        check_remote(force=True)


def test_remote_version_mismatch(ndif_config):
    monkeypatch = ndif_config
    from nnsight import ndif

    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setenv("NDIF_HOST", "http://ndif.invalid")
    monkeypatch.setattr(ndif, "get_remote_env", lambda **kw: {"packages": {"nnsight": "0.1.0"}})
    with pytest.raises(RemoteError, match="runs nnsight 0.1.0 but this client has nnsight"):
        check_remote(force=True)
    import importlib.metadata as md

    same = md.version("nnsight")
    monkeypatch.setattr(ndif, "get_remote_env", lambda **kw: {"packages": {"nnsight": same}})
    assert check_remote(force=True) == "http://ndif.invalid"


def test_rank_agreement():
    keys = dict(model="m", backend="tl", pair="p", metric="speech", component="resid_pre")
    exact = pd.DataFrame([{**keys, "layer": 0, "position": i, "value": v}
                          for i, v in enumerate([0.1, 0.5, 0.2, 0.9])])  # fmt: skip
    attr = exact.assign(value=[1.0, 3.0, 2.0, 4.0])
    got = rank_agreement(exact, attr)
    assert got.iloc[0].spearman == pytest.approx(1.0) and got.iloc[0].n == 4
    flipped = rank_agreement(exact, attr.assign(value=[4.0, 2.0, 3.0, 1.0]))
    assert flipped.iloc[0].spearman == pytest.approx(-1.0)


def test_fit_probe_separates_words():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=gen) * 3
    labels = ["cat", "dog", "bird"] * 20
    x = centers[torch.tensor([0, 1, 2] * 20)] + 0.3 * torch.randn(60, 16, generator=gen)
    probe = fit_probe(x, labels, stream=1, seed=0, steps=100)
    assert probe.accuracy == 1.0
    d = probe.direction("Cat")
    assert d is not None and torch.allclose(d.norm(), torch.tensor(1.0))
    assert probe.direction("fish") is None
    r = random_directions(20, 16, seed=1)
    assert torch.allclose(r.norm(dim=-1), torch.ones(20))
    assert torch.equal(r, random_directions(20, 16, seed=1))


def _ablation(text_damage: float, n_words=12, n_random=20, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(n_words):
        base = dict(model="m", backend="tl", band="1-1", utterance=f"u{w}", word_index=1,
                    word="cat", metric="speech", base=0.0, ablated=0.0)  # fmt: skip
        rows.append({**base, "direction": "text", "draw": -1,
                     "effect": text_damage + 0.01 * rng.standard_normal()})  # fmt: skip
        rows += [{**base, "direction": "random", "draw": d,
                  "effect": 0.05 * rng.standard_normal()} for d in range(n_random)]  # fmt: skip
    return pd.DataFrame(rows)


def _lens_words(own_hit: float, n=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(n):
        for layer in (0, 1, 2):
            rows.append(dict(model="m", backend="tl", item=item, layer=layer, content=True,
                             rank_text_any=0 if rng.random() < own_hit else 50,
                             control_rank_text_any=0 if rng.random() < 0.1 else 50))  # fmt: skip
    return pd.DataFrame(rows)


def test_verdict_rule():
    dec_yes = decodable(_lens_words(0.9), "1-2", n_boot=300)
    dec_no = decodable(_lens_words(0.1), "1-2", n_boot=300)
    assert dec_yes["ci_low"] > 0 and dec_yes["n"] == 30
    assert dec_no["ci_low"] <= 0
    cau_yes = causal(_ablation(1.0), "1-1", n_boot=300)
    cau_no = causal(_ablation(0.0), "1-1", n_boot=300)
    assert cau_yes["n_words"] == 12 and cau_yes["n_random"] == 20
    assert cau_yes["effect_size"] > 3
    assert decide(dec_yes, cau_yes)[0] == "load-bearing"
    assert decide(dec_yes, cau_no)[0] == "decodable-only"
    assert decide(dec_no, cau_yes)[0] == "neither"
    assert decide(dec_no, cau_no)[0] == "neither"
    assert decide(decodable(_lens_words(0.9), "5-6"), cau_yes)[0] == "insufficient-data"
