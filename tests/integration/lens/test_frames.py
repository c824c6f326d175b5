"""The frames of a lens run: summary columns, the control pool, words without a target."""

import pytest

import speech_interp as si
from speech_interp.data import Utterance, Word
from speech_interp.lens import (
    LENS_COLUMNS,
    run_lens,
)

pytestmark = pytest.mark.integration


def test_summary_shape_and_columns(tl_result, models):
    s = tl_result.summary
    assert list(s.columns) == LENS_COLUMNS
    assert set(s.layer) == set(range(si.n_layers(models["tl"]) + 1))
    assert set(s.metric) == {
        "transcription",
        "transcription_control",
        "transcription_control_expected",
        "next_word",
        "next_word_control",
        "speech_mass",
        "kl_to_final",
        "top1_agreement",
    }
    assert set(s[s.metric == "next_word"].position_rule) == {"last", "maxpool"}
    rules = {"after_uniqueness", "any", "last", "pre_onset", "maxpool"}
    assert set(s[s.metric == "transcription"].position_rule) == rules
    assert set(s[s.metric == "transcription_control_expected"].position_rule) == rules
    # the expected control: per word, the mean hit over its pool, then the mean over words
    pool, w = tl_result.pool, tl_result.words
    at1 = pool[pool.layer == 1]
    per_word = (at1.rank_text_any < 5).groupby(at1.item).mean()
    content = w[(w.layer == 1) & w.content].item
    expected = per_word[per_word.index.isin(content)].mean()
    sel = s[(s.metric == "transcription_control_expected") & (s.layer == 1) & (s.k == 5)]
    sel = sel[(sel.vocab == "text") & (sel.position_rule == "any") & (sel.words == "content")]
    assert sel["value"].item() == pytest.approx(expected)
    assert s[s.metric == "speech_mass"]["k"].isna().all()
    assert set(s.k.dropna()) == {1, 5, 10} and set(s.words) == {"all", "content"}
    n_next = s[(s.metric == "next_word") & (s.words == "all")]["n"].iloc[0]
    last_words = (tl_result.words.next_word.isna()).groupby(tl_result.words.layer).sum()[0]
    assert n_next == tl_result.words.item.nunique() - last_words


def test_missing_target_is_reported(models, data):
    odd = Utterance(
        "odd", (Word("cat", "speech", (1, 2), "noun"), Word("<Un3>", "speech", (3,), "noun"))
    )
    with pytest.warns(UserWarning, match="1 spoken word.*no text target.*'<Un3>'"):
        res = run_lens(models["tl"], models["layout"], [*data[:2], odd], progress=False)
    assert res.n_missing == 1 and res.missing.word.tolist() == ["<Un3>"]
    rows = res.words[res.words.word == "<Un3>"]
    assert len(rows) == 3 and (rows.target_rule == "missing").all()
    assert rows.rank_text_any.isna().all()
    n_spoken = res.words.item.nunique()
    s = res.summary
    n = s[(s.metric == "transcription") & (s.words == "all")]["n"].iloc[0]
    assert n == n_spoken - 1
