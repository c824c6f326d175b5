"""Spoken-knowledge scoring: slamkit's mean log-likelihood against a hand-written one, on both
backends; the 1 / 0.5 / 0 rule; what cannot be scored is listed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from speech_interp.data.utterances import Utterance, Word
from speech_interp.evaluation.knowledge import (
    continuation_ids,
    knowledge_scores,
    mean_log_likelihood,
    summarize_knowledge,
)
from speech_interp.models import hf_model
from speech_interp.testing import word_units

pytestmark = pytest.mark.integration


def _fact(i: int, correct="park", counterfactual="river", **meta) -> Utterance:
    words = tuple(Word(w, "speech", word_units("a", w)) for w in "the cat lives in the".split())
    meta = {
        "item": f"f{i}",
        "category": "home",
        "correct": correct,
        "counterfactual": counterfactual,
        **meta,
    }
    return Utterance(f"f{i}/a", words, voice="a", meta=meta)


def _by_hand(model, ids, pad_id=None) -> float:
    """slamkit's rule written out: shift, log-softmax, mask pad-id tokens, mean."""
    with torch.no_grad():
        logits = hf_model(model)(ids[None]).logits[0].float()
    logp = F.log_softmax(logits[:-1], -1).gather(-1, ids[1:, None])[:, 0]
    keep = torch.ones_like(logp, dtype=torch.bool) if pad_id is None else ids[1:] != pad_id
    return float(logp[keep].mean())


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_mean_log_likelihood_is_slamkits(models, backend):
    model, layout = models[backend], models["layout"]
    ids = continuation_ids(_fact(0), "correct", "text", layout, model.tokenizer)
    assert isinstance(ids, torch.Tensor) and layout.text_marker_id in ids.tolist()
    got = mean_log_likelihood(model, ids)
    assert got == pytest.approx(_by_hand(models["nnsight"], ids), abs=1e-4)
    pad = int(ids[3])  # tokens equal to the pad id are left out, as slamkit's mask does
    assert mean_log_likelihood(model, ids, pad_id=pad) == pytest.approx(
        _by_hand(models["nnsight"], ids, pad), abs=1e-4
    )
    with pytest.raises(ValueError, match=">= 2 tokens"):
        mean_log_likelihood(model, ids[:1])


def test_scores_follow_the_rule_and_list_what_is_missing(models):
    model, layout = models["tl"], models["layout"]
    facts = [
        _fact(0),
        _fact(1, correct="park", counterfactual="park"),
        _fact(2, speech_correct_units=[1, 2, 3], speech_counterfactual_units=[4, 5]),
    ]
    scores, skipped = knowledge_scores(model, layout, facts, model_id="tiny", progress=False)
    text = scores[scores.continuation == "text"].set_index("item")
    for _, row in text.iterrows():
        expect = 1.0 if row.ll_correct > row.ll_counterfactual else 0.0
        expect = 0.5 if row.ll_correct == row.ll_counterfactual else expect
        assert row.score == expect
    assert text.loc["f1", "score"] == 0.5  # the same completion twice: a tie
    speech = scores[scores.continuation == "speech"]
    assert list(speech["item"]) == ["f2"]
    assert sorted(skipped["item"]) == ["f0", "f1"]
    assert set(skipped["reason"]) == {"no correct completion audio in the fact set"}
    summary = summarize_knowledge(scores, n_boot=200)
    overall = summary[(summary.continuation == "text") & (summary.category == "all")].iloc[0]
    assert overall.score == pytest.approx(text["score"].mean()) and overall.n == 3
    assert overall.ci_low <= overall.score <= overall.ci_high
    with pytest.raises(ValueError, match="continuations must be among"):
        knowledge_scores(model, layout, facts, continuations=["audio"], progress=False)
    with pytest.raises(ValueError, match="no utterance carries a fact"):
        knowledge_scores(model, layout, [Utterance("x", facts[0].words)], progress=False)
