"""run_lens against an independent full-vocabulary computation, across backends, batch
groups and chunk sizes; bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

import speech_interp as si
from speech_interp.data import Utterance, Word
from speech_interp.lens import (
    RANK_COLUMNS,
    LogitLens,
    TunedLens,
    run_lens,
)

from tolerance import assert_close_float

pytestmark = pytest.mark.integration
N_BOOT = 200


def _rank(logits, token, mask):
    others = mask.clone()
    others[token] = False
    return int(((logits > logits[token]) & others).sum())


def test_lens_matches_hand_computation(models, data, tl_result, hand_logits):
    layout, tok = models["layout"], models["tl"].tokenizer
    hf = si.hf_model(models["tl"])
    text, full = layout.text_mask, torch.ones(layout.vocab_size, dtype=torch.bool)
    words = tl_result.words
    checked = 0
    for u, utt in enumerate(data):
        prompt = utt.to_prompt(layout, tok)
        logits = hand_logits(hf, prompt.input_ids)
        probs = logits.double().softmax(-1)
        for row in words[words["utterance_index"] == u].itertuples():
            assert [row.target_id] == tok.encode(" " + row.word, add_special_tokens=False)
            pos = prompt.word_positions[row.word_index].tolist()
            lg = logits[row.layer]
            pool = tl_result.pool
            pool = pool[(pool["item"] == row.item) & (pool["layer"] == row.layer)]
            assert len(pool) >= 1 and row.control_word.lower() in set(pool.pool_word.str.lower())
            cells = [("rank", row.target_id, row), ("control_rank", row.control_id, row)]
            cells += [("rank", p.pool_id, p) for p in pool.itertuples()]
            up = row.uniqueness_point  # units and positions are one to one here
            for prefix, token, where in cells:
                for vocab, mask in (("text", text), ("full", full)):
                    ranks = [_rank(lg[p], token, mask) for p in pos]
                    expected = {
                        "any": min(ranks),
                        "last": ranks[-1],
                        "after_uniqueness": min(ranks[up:]),
                        "pre_onset": _rank(lg[pos[0] - 1], token, mask),
                        "maxpool": _rank(lg[pos].max(0).values, token, mask),
                    }
                    for rule, value in expected.items():
                        assert getattr(where, f"{prefix}_{vocab}_{rule}") == value, (rule, prefix)
            if row.next_id >= 0:
                assert row.next_rank_text_last == _rank(lg[pos[-1]], row.next_id, text)
                assert row.next_rank_full_last == _rank(lg[pos[-1]], row.next_id, full)
                ctrl = _rank(lg[pos[-1]], row.next_control_id, text)
                assert row.next_control_rank_text_last == ctrl
                pooled = lg[pos].max(0).values  # the paper's reading: max over the word's logits
                assert row.next_rank_text_maxpool == _rank(pooled, row.next_id, text)
                assert row.next_rank_full_maxpool == _rank(pooled, row.next_id, full)
                ctrl = _rank(pooled, row.next_control_id, text)
                assert row.next_control_rank_text_maxpool == ctrl
            else:
                assert np.isnan(row.next_rank_text_last) and np.isnan(row.next_rank_text_maxpool)
            mass = probs[row.layer, pos][:, layout.speech_mask].sum(-1)
            # float32 log-sum-exp over the vocabulary (seen: 7 eps); positions differ by >= 4e-4
            vocab = layout.vocab_size
            assert_close_float(row.speech_mass_any, float(mass.mean()), ops=vocab, scale=1.0)
            assert_close_float(row.speech_mass_last, float(mass[-1]), ops=vocab, scale=1.0)
            top = lg[pos[-1]].masked_fill(~text, -torch.inf).argmax()
            assert row.top_text_last == tok.decode([int(top)])
            # lens quality against the model's own output distribution (HF logits)
            logp, final = probs[row.layer, pos].log(), probs[-1, pos]
            kl = (final * (final.log() - logp)).sum(-1)
            # the rounding of the two log-sum-exps it subtracts (terms <= 1); KLs reach 2e-3
            assert_close_float(row.kl_to_final, float(kl.mean()), ops=vocab, scale=1.0)
            agree = logits[row.layer, pos].argmax(-1) == logits[-1, pos].argmax(-1)
            assert row.top1_agreement == pytest.approx(float(agree.double().mean()))
            checked += 1
    assert checked == len(words) and checked > 40
    # summary rates are the mean of the per-word hits, n counts the words
    s = tl_result.summary
    sel = s[(s.metric == "transcription") & (s.k == 10) & (s.vocab == "text")]
    sel = sel[(sel.position_rule == "any") & (sel.words == "all") & (sel.layer == 1)]
    hits = words[words.layer == 1]["rank_text_any"] < 10
    assert sel["value"].item() == pytest.approx(hits.mean())
    assert sel["n"].item() == len(hits)
    assert sel["ci_low"].item() <= sel["value"].item() <= sel["ci_high"].item()


def test_backends_and_remote_simulation_agree(models, data, tl_result):
    nn = models["nnsight"]
    for remote in (False, "local"):
        res = run_lens(nn, models["layout"], data, progress=False, n_boot=N_BOOT, remote=remote)
        a, b = tl_result.words, res.words
        assert len(a) == len(b)
        np.testing.assert_array_equal(a[RANK_COLUMNS].to_numpy(), b[RANK_COLUMNS].to_numpy())
        for col in ("speech_mass_any", "speech_mass_last"):
            assert np.abs(a[col] - b[col]).max() <= 1e-5
        assert (res.summary.backend == "nnsight").all()
        diff = (tl_result.summary.value - res.summary.value).abs()
        assert diff.max() <= 1e-5


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_batched_equals_one_utterance_at_a_time(models, data, tl_result, backend):
    """Grouping utterances (one padded forward and one vocabulary pass per group) changes no
    value: each utterance alone (batch_rows=1) gives the same frames bit for bit."""
    grouped = tl_result if backend == "tl" else None
    if grouped is None:
        grouped = run_lens(models[backend], models["layout"], data, progress=False, n_boot=N_BOOT)
    alone = run_lens(
        models[backend], models["layout"], data, progress=False, n_boot=N_BOOT, batch_rows=1
    )
    pd.testing.assert_frame_equal(grouped.words, alone.words, check_exact=True)
    pd.testing.assert_frame_equal(grouped.pool, alone.pool, check_exact=True)
    pd.testing.assert_frame_equal(grouped.summary, alone.summary, check_exact=True)
    with pytest.raises(ValueError, match="batch_rows"):
        run_lens(models["tl"], models["layout"], data, progress=False, batch_rows=0)


def test_chunked_equals_unchunked(models, data, tl_result):
    whole = run_lens(
        models["tl"], models["layout"], data[:2], progress=False, n_boot=N_BOOT, chunk_size=10**6
    )
    chunked = run_lens(
        models["tl"], models["layout"], data[:2], progress=False, n_boot=N_BOOT, chunk_size=61
    )
    np.testing.assert_array_equal(
        whole.words[RANK_COLUMNS].to_numpy(), chunked.words[RANK_COLUMNS].to_numpy()
    )
    assert (whole.words.top_text_last == chunked.words.top_text_last).all()
    rates = ~whole.summary.metric.isin(["speech_mass", "kl_to_final"])
    pd.testing.assert_frame_equal(whole.summary[rates], chunked.summary[rates])
    # float32 log-sum-exp within a chunk (terms <= 1): chunking moves the mass and the KL by
    # float32 rounding only (seen: 9 eps); neighbouring positions' masses differ by >= 4e-4
    for col in ("speech_mass_any", "speech_mass_last", "kl_to_final"):
        assert_close_float(
            chunked.words[col], whole.words[col], ops=models["layout"].vocab_size, scale=1.0
        )


def test_bad_input(models, data, tmp_path):
    model, layout = models["tl"], models["layout"]
    lens = LogitLens(model)
    resid = torch.zeros(2, 32)
    for layer in (3, -1):
        with pytest.raises(ValueError, match=f"layer {layer} out of range"):
            lens.logits_at(layer, resid)
    with pytest.raises(ValueError, match="no utterances"):
        run_lens(model, layout, [], progress=False)
    text_only = [Utterance("t", (Word("cat", "text"), Word("sees", "text")))]
    with pytest.raises(ValueError, match="no spoken words"):
        run_lens(model, layout, text_only, progress=False)
    with pytest.raises(ValueError, match="needs a TunedLens"):
        run_lens(model, layout, data, lens="tuned", progress=False)
    with pytest.raises(ValueError, match="backend='nnsight' but the model is a 'tl'"):
        run_lens(model, layout, data, backend="nnsight", progress=False)
    with pytest.raises(ValueError, match="tuned lens is for d_model=16"):
        TunedLens(16, 2).bind(model)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        TunedLens.load(tmp_path)
