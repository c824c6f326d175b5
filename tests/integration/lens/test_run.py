"""Lens numbers against an independent full-vocabulary computation, across backends and chunk
sizes; tuned lens training and round trip; bad input; the ``lens`` command end to end."""

import json
import random
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import typer

import speech_interp as si
from speech_interp.cli.lens import lens_command
from speech_interp.data import Utterance, Word, write_utterances
from speech_interp.lens import (
    LENS_COLUMNS,
    RANK_COLUMNS,
    LogitLens,
    TunedLens,
    excess_over_control,
    kl_to_final,
    phase_bands,
    run_lens,
)

pytestmark = pytest.mark.integration
N_BOOT = 200
CATEGORIES = {
    "det": (["the", "a"], False),
    "noun": (["cat", "dog", "bird", "fish", "house", "park", "river", "tree", "garden"], True),
    "verb": (["lives", "sees", "eats"], True),
    "adj": (["red", "blue", "big", "small", "happy", "old", "young"], True),
    "prep": (["in", "on", "under", "near"], False),
}
TEMPLATE = ["det", "adj", "noun", "verb", "prep", "det", "noun"]


def _utterances(n: int, seed: int, text_every: int = 3) -> list[Utterance]:
    rng = random.Random(seed)
    utts = []
    for i in range(n):
        words = []
        for j, cat in enumerate(TEMPLATE):
            vocab, content = CATEGORIES[cat]
            text = (i + j) % text_every == 0 and j > 0
            units = None if text else tuple(rng.randrange(500) for _ in range(rng.randint(1, 4)))
            words.append(Word(rng.choice(vocab), "text" if text else "speech", units, cat, content))
        utts.append(Utterance(f"u{i}", tuple(words)))
    return utts


@pytest.fixture(scope="module")
def data():
    return _utterances(6, seed=1)


@pytest.fixture(scope="module")
def tl_result(models, data):
    return run_lens(models["tl"], models["layout"], data, progress=False, n_boot=N_BOOT)


def _hand_logits(hf, ids):
    """Independent reference: HF hidden states -> final norm -> lm_head, full vocabulary."""
    with torch.no_grad():
        out = hf(ids[None], output_hidden_states=True)
        hs = out.hidden_states  # L+1; the last one is already normed by HF
        L = len(hs) - 1
        logits = [hf.lm_head(hf.model.norm(hs[i]))[0] for i in range(L)]
    return torch.stack([*logits, out.logits[0]])


def _rank(logits, token, mask):
    others = mask.clone()
    others[token] = False
    return int(((logits > logits[token]) & others).sum())


def test_lens_matches_hand_computation(models, data, tl_result):
    layout, tok = models["layout"], models["tl"].tokenizer
    hf = si.hf_model(models["tl"])
    text, full = layout.text_mask, torch.ones(layout.vocab_size, dtype=torch.bool)
    words = tl_result.words
    checked = 0
    for u, utt in enumerate(data):
        prompt = utt.to_prompt(layout, tok)
        logits = _hand_logits(hf, prompt.input_ids)
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
            else:
                assert np.isnan(row.next_rank_text_last)
            mass = probs[row.layer, pos][:, layout.speech_mask].sum(-1)
            assert row.speech_mass_any == pytest.approx(float(mass.mean()), abs=1e-6)
            assert row.speech_mass_last == pytest.approx(float(mass[-1]), abs=1e-6)
            top = lg[pos[-1]].masked_fill(~text, -torch.inf).argmax()
            assert row.top_text_last == tok.decode([int(top)])
            # lens quality against the model's own output distribution (HF logits)
            logp, final = probs[row.layer, pos].log(), probs[-1, pos]
            kl = (final * (final.log() - logp)).sum(-1)
            assert row.kl_to_final == pytest.approx(float(kl.mean()), rel=1e-4, abs=1e-5)
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
    assert set(s[s.metric == "next_word"].position_rule) == {"last"}
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
    mass = ["speech_mass_any", "speech_mass_last", "kl_to_final"]
    # float32 log-sum-exp within a chunk: chunking moves the mass by float32 rounding only
    np.testing.assert_allclose(whole.words[mass], chunked.words[mass], rtol=0, atol=1e-6)


def test_excess_and_phase_bands(tl_result):
    ex = excess_over_control(tl_result.words, metric="transcription", k=10, n_boot=N_BOOT)
    assert list(ex.columns) == LENS_COLUMNS and set(ex.metric) == {"transcription_excess"}
    w = tl_result.words
    at1 = w[(w.layer == 1) & w.content & (w.control_id >= 0)]
    au, ctrl = at1.rank_text_after_uniqueness, at1.control_rank_text_after_uniqueness
    expected = (au < 10).mean() - (ctrl < 10).mean()
    assert ex[ex.layer == 1]["value"].item() == pytest.approx(expected)
    assert set(ex.position_rule) == {"after_uniqueness"}
    pre = excess_over_control(w, k=10, baseline="pre_onset", n_boot=N_BOOT)
    assert set(pre.metric) == {"transcription_excess_pre_onset"}
    expected = (au < 10).mean() - (at1.rank_text_pre_onset < 10).mean()
    assert pre[pre.layer == 1]["value"].item() == pytest.approx(expected)
    bands = phase_bands(tl_result, n_boot=N_BOOT)
    assert list(bands.phase) == ["transcription", "next_word", "speech"]
    # a planted per-word frame: transcription at every layer (only 1..L-1 may qualify), no
    # next-word excess, speech mass above the threshold at the last layer only
    planted = w.copy()
    planted["rank_text_after_uniqueness"] = 0
    planted["control_rank_text_after_uniqueness"] = 500
    planted["rank_text_pre_onset"] = 500
    planted["next_rank_text_last"] = 500
    planted["speech_mass_any"] = np.where(planted.layer == 2, 0.9, 0.1)
    bands = phase_bands(planted, n_boot=N_BOOT).set_index("phase")
    band = bands.loc["transcription"]
    assert (band["first_layer"], band["last_layer"], band["qualifying"]) == (1, 1, [1])
    nxt = bands.loc["next_word"]
    assert pd.isna(nxt["first_layer"]) and nxt["qualifying"] == []
    # the same hits, already predicted before the word began: no transcription band
    planted["rank_text_pre_onset"] = 0
    predicted = phase_bands(planted, n_boot=N_BOOT).set_index("phase")
    assert predicted.loc["transcription", "qualifying"] == []
    assert bands.loc["speech", "qualifying"] == [2] and bands.loc["speech", "first_layer"] == 2


def test_excess_difference_of_two_runs(tl_result):
    """A model against itself differs by 0; against a copy with every hit removed at one layer,
    by that layer's excess, computed by hand."""
    from speech_interp.lens.metrics import excess_difference

    w = tl_result.words
    same = excess_difference(w, w, 1, 1, k=10, n_boot=N_BOOT)
    assert same[:3] == (0.0, 0.0, 0.0)
    blind = w.copy()
    blind["rank_text_after_uniqueness"] = 10**6
    blind["control_rank_text_after_uniqueness"] = 10**6
    mean, lo, hi, n = excess_difference(w, blind, 2, 2, k=10, n_boot=N_BOOT)
    at2 = w[(w.layer == 2) & w.content & (w.control_id >= 0)]
    au, ctrl = at2.rank_text_after_uniqueness, at2.control_rank_text_after_uniqueness
    assert mean == pytest.approx((au < 10).mean() - (ctrl < 10).mean())
    assert lo <= mean <= hi and n == len(at2)
    with pytest.raises(ValueError, match="same words"):
        excess_difference(w, w[w.item > w.item.min()], 1, 1, n_boot=N_BOOT)
    with pytest.raises(ValueError, match="layer 99"):
        excess_difference(w, w, 99, 1, n_boot=N_BOOT)


def test_tuned_lens_beats_logit_lens_and_round_trips(models, tmp_path):
    model, layout = models["tl"], models["layout"]
    tok = model.tokenizer
    train = [u.to_prompt(layout, tok) for u in _utterances(24, seed=2, text_every=2)]
    held_out = [u.to_prompt(layout, tok) for u in _utterances(8, seed=3, text_every=2)]
    lens = TunedLens.from_model(model)
    assert all((p == 0).all() for p in lens.parameters())  # identity at init
    logit = kl_to_final(LogitLens(model), model, held_out)
    torch.testing.assert_close(
        torch.tensor(kl_to_final(lens, model, held_out).kl.values), torch.tensor(logit.kl.values)
    )
    losses = lens.fit(model, train, steps=80, lr=1e-2, seed=0, progress=False)
    assert losses[-1] < losses[0]
    tuned = kl_to_final(lens, model, held_out)
    L = si.n_layers(model)
    assert (tuned.kl[:L] < logit.kl[:L]).all(), (tuned.kl.tolist(), logit.kl.tolist())
    assert tuned.kl[L] == pytest.approx(0.0, abs=1e-6)

    lens.save(tmp_path / "tuned")
    state = torch.load(tmp_path / "tuned" / "params.pt", weights_only=True)
    assert sorted(state) == sorted(f"{i}.{p}" for i in range(L) for p in ("weight", "bias"))
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert (config["d_model"], config["num_hidden_layers"]) == (32, L)
    assert config["lens_type"] == "linear_tuned_lens"
    loaded = TunedLens.load(tmp_path / "tuned", model=model)
    resid = si.residual_stack(model, held_out[0].input_ids[None])[:, 0]
    for layer in range(L + 1):
        assert torch.equal(
            lens.logits_at(layer, resid[layer]), loaded.logits_at(layer, resid[layer])
        )
    data = _utterances(2, seed=4)
    a = run_lens(model, layout, data, lens=lens, progress=False, n_boot=N_BOOT)
    b = run_lens(model, layout, data, lens=loaded, progress=False, n_boot=N_BOOT)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    assert set(a.summary.lens) == {"tuned"}


@pytest.mark.parametrize("kind", ["logit", "tuned"])
def test_streams_scored_together_equal_streams_scored_one_by_one(models, data, kind):
    model, layout = models["tl"], models["layout"]
    lens = LogitLens(model) if kind == "logit" else TunedLens.from_model(model)
    if kind == "tuned":  # a non-identity translator per layer
        torch.manual_seed(0)
        for p in lens.parameters():
            torch.nn.init.normal_(p, std=0.1)
    prompt = data[0].to_prompt(layout, model.tokenizer)
    resid = si.residual_stack(model, prompt.input_ids[None])[:, 0]
    n = resid.shape[1]
    qpos, qtok = torch.tensor([0, n - 1, 3, 3]), torch.tensor([5, 7, 1, layout.vocab_size - 1])
    with torch.no_grad():
        together = lens.score_streams(resid, qpos, qtok, layout, chunk_size=40)
        for layer, got in enumerate(together):
            alone = lens.score(layer, resid[layer], qpos, qtok, layout, chunk_size=40)
            assert torch.equal(got.rank_text, alone.rank_text)
            assert torch.equal(got.rank_full, alone.rank_full)
            assert torch.equal(got.top_text_id, alone.top_text_id)
            torch.testing.assert_close(got.speech_mass, alone.speech_mass, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="got 2 streams"):
        lens.score_streams(resid[:2], qpos, qtok, layout)


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


def test_lens_command_end_to_end(models, tmp_path):
    utts = [replace(u, split="eval") for u in _utterances(3, seed=5)]
    utts += [replace(u, id=f"other-{u.id}", split="other") for u in _utterances(2, seed=6)]
    data_file = write_utterances(tmp_path / "data.jsonl", utts, family="sims")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = lens_command(
            model=models["path"], data=data_file, split="eval", backend="tl", out=out, seed=1,
            chunk_size=100, batch_rows=1,
        )  # fmt: skip
        lens_command(
            model=models["path"],
            data=data_file,
            backend="nnsight",
            lens="tuned",
            tuned_path=tmp_path / "tuned",
            tuned_steps=3,
            out=tmp_path / "out_tuned",
        )
    for name in ("lens.csv", "lens_words.csv", "phases.json", "phase_curves.png",
                 "token_heatmap.png", "run.json"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "lens.csv")
    assert list(table.columns) == LENS_COLUMNS and len(table) == len(result.summary)
    run = json.loads((out / "run.json").read_text())
    assert run["model_id"] == models["path"] and run["seed"] == 1 and run["batch_rows"] == 1
    assert run["split"] == "eval" and run["n_utterances"] == 3  # the "other" split is left out
    assert list(run["weights_sha256"]) == ["model.safetensors"]
    assert set(run["packages"]) == {
        "torch",
        "transformers",
        "transformer-lens",
        "nnsight",
        "speech-interp",
    }
    assert run["words_target_missing"] == 0
    phases = json.loads((out / "phases.json").read_text())
    assert [b["phase"] for b in phases["bands"]] == ["transcription", "next_word", "speech"]
    assert (tmp_path / "tuned" / "params.pt").exists()
    with pytest.raises(typer.BadParameter, match="only used with --lens tuned"):
        lens_command(model=models["path"], data=data_file, tuned_path=tmp_path, out=out)
    tuned = pd.read_csv(tmp_path / "out_tuned" / "lens.csv")
    assert set(tuned.lens) == {"tuned"} and set(tuned.backend) == {"nnsight"}


def test_saved_lens_is_loadable_by_tuned_lens(models, tmp_path):
    """tuned-lens 0.2 checks unembed_hash (sha256 of numpy's 1-decimal string of the matrix)
    and always builds and zeroes each translator's bias."""
    import hashlib

    import numpy as np

    model = models["tl"]
    lens = TunedLens.from_model(model, bias=False)
    with torch.no_grad():
        for t in lens.layer_translators:
            t.weight.normal_(0, 0.01)
    lens.save(tmp_path / "nobias")
    config = json.loads((tmp_path / "nobias" / "config.json").read_text())
    w = si.hf_model(model).lm_head.weight.detach().float().numpy()
    assert (
        config["unembed_hash"] == hashlib.sha256(np.array_str(w, precision=1).encode()).hexdigest()
    )
    assert config["bias"] is True
    state = torch.load(tmp_path / "nobias" / "params.pt", weights_only=True)
    assert all((state[f"{i}.bias"] == 0).all() for i in range(lens.n_layers))
    loaded = TunedLens.load(tmp_path / "nobias", model=model)
    resid = torch.randn(5, 32)
    for layer in range(lens.n_layers + 1):
        assert torch.equal(lens.logits_at(layer, resid), loaded.logits_at(layer, resid))
    config["unembed_hash"] = "0" * 64
    (tmp_path / "nobias" / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="unembed_hash mismatch"):
        TunedLens.load(tmp_path / "nobias", model=model)


def test_text_input_lens_matches_hand_computation(models, data):
    """The organism's text-pathway diagnostic, on any model: current / next word top-5 over the
    text vocabulary per stream, against HF hidden states -> final norm -> lm_head."""
    from speech_interp.lens.text_input import text_input_lens

    model, layout = models["tl"], models["layout"]
    frame = text_input_lens(model, layout, data, k=5)
    hf, mask = si.hf_model(model), layout.text_mask
    current, following = [], []
    for utt in data:
        words = tuple(replace(w, modality="text", units=None) for w in utt.words)
        prompt = replace(utt, words=words).to_prompt(layout, model.tokenizer)
        logits = _hand_logits(hf, prompt.input_ids)
        top = logits.masked_fill(~mask, -torch.inf).topk(5, -1).indices  # [L+1, pos, 5]
        for w, word in enumerate(utt.words):
            if not word.content:
                continue
            pos = int(prompt.word_positions[w][-1])
            current.append((top[:, pos] == prompt.input_ids[pos]).any(-1).float())
            if w + 1 < len(utt.words):
                following.append((top[:, pos] == prompt.input_ids[pos + 1]).any(-1).float())
    for target, hits in (("current", current), ("next", following)):
        got = frame[frame.target == target].sort_values("layer")
        np.testing.assert_allclose(got["value"], torch.stack(hits).mean(0).numpy(), atol=1e-6)
        assert (got["n"] == len(hits)).all()
