"""The recognition gate: recurrences found as stated, scores equal an independent forward pass,
and the gate separates a model that cannot hear (speech-only: no text to name a word in) from
chance-level guessing."""

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from speech_interp.data import read_utterances
from speech_interp.hooks import ORGANISM
from speech_interp.organism import ORGANISM_DIR, SHIPPED_DATA
from speech_interp.organism.hearing import (
    GATE_RATE,
    gate_rows,
    hears,
    recognition_gate,
    recurrences,
)
from speech_interp.organism.train import OrganismConfig, speech_table
from speech_interp.organism.world import V2

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def parts():
    _, utts = read_utterances(SHIPPED_DATA)
    units = speech_table(OrganismConfig(), 0, ORGANISM_DIR, progress=False).units
    return utts, units


def _load(variant):
    d = ORGANISM_DIR / variant
    model = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(d)
    return model, tok, ORGANISM.bind(tok, model_vocab_size=model.config.vocab_size)


def test_recurrences_are_first_occurrences_named_again_with_absent_controls(parts):
    utts, _ = parts
    items = recurrences(utts, V2, seed=0)
    assert items
    for r in items:
        words = [w.word for w in r.utterance.words]
        w = words[r.first]
        assert r.utterance.words[r.first].content and words.index(w) == r.first
        assert words[r.again] == w and w not in words[r.first + 1 : r.again]
        assert r.control != w and r.control not in words
        assert V2.category_of[r.control] == V2.category_of[w]
        assert r.utterance.meta.get("kind") != "fact"
    assert [r.control for r in items] == [r.control for r in recurrences(utts, V2, seed=0)]


def test_scores_match_an_independent_forward_pass(parts):
    utts, units = parts
    model, tok, layout = _load("full")
    scores, _ = recognition_gate(model, tok, layout, utts[:40], units, V2)
    r = recurrences(utts[:40], V2)[0]
    # Independent: the token ids written out by hand from the vocabulary's unit and marker tokens.
    ids = [tok.bos_token_id, tok.convert_tokens_to_ids("<speech>")]
    for w in r.utterance.words[: r.first + 1]:
        ids += tok.convert_tokens_to_ids([f"<unit{u}>" for u in w.units])
    ids.append(tok.convert_tokens_to_ids("<text>"))
    ids += [
        tok.convert_tokens_to_ids("Ġ" + w.word) for w in r.utterance.words[r.first + 1 : r.again]
    ]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    target = tok.convert_tokens_to_ids("Ġ" + r.utterance.words[r.again].word)
    expected = float(logits.log_softmax(-1)[target])
    assert scores["logp_real"].iloc[0] == pytest.approx(expected, abs=1e-4)


def test_gate_rows_count_wins_ties_and_decide_only_on_training_voices():
    words = np.repeat([f"w{i}" for i in range(20)], 3)
    base = pd.DataFrame({"split": "eval", "voice": "v", "word": words, "logp_control": -2.0})
    win = gate_rows(base.assign(logp_real=-1.0))
    assert win.loc[win.voice == "all", "win_rate"].item() == 1.0 and hears(win)
    tie = gate_rows(base.assign(logp_real=-2.0))
    assert tie.loc[tie.voice == "all", "win_rate"].item() == 0.5 and not hears(tie)
    held = gate_rows(base.assign(logp_real=-1.0, split="heldout_voice"))
    assert not hears(held)  # held-out voices never decide the gate
    empty = gate_rows(base.iloc[:0].assign(logp_real=[]))  # nothing recurs: unreadable
    assert empty.n.tolist() == [0] and empty.win_rate.isna().all() and not hears(empty)


def test_a_model_without_text_does_not_pass_the_gate(parts):
    """v4's speech-only knob never saw text, so it cannot name a spoken word in text."""
    from speech_interp.organism.world import WORLDS, eval_data

    world = WORLDS["small-40"]
    _, utts = read_utterances(eval_data(world))
    _, units = parts
    model, tok, layout = _load("v4-speech-only")
    _, gate = recognition_gate(model, tok, layout, utts, units, world)
    row = gate[(gate.split == "eval") & (gate.voice == "all")].iloc[0]
    assert row.ci_low < 0.5 < row.ci_high and row.win_rate < GATE_RATE and not hears(gate)
