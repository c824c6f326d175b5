"""The identity patchscope: its cached pass equals the whole hooked prompt, its rows, its bench."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import speech_interp as si
from speech_interp.data import read_utterances, select_sentences, select_split
from speech_interp.hooks import submodule
from speech_interp.lens.ceiling import text_ceiling, word_ranks
from speech_interp.lens.current import stream_states, written_words
from speech_interp.lens.metrics import LENS_COLUMNS
from speech_interp.lens.patchscope import (
    IDENTITY_PROMPT,
    PatchscopeLens,
    decoder_floor,
    neighbour_words,
)
from speech_interp.lens.registry import LENSES, as_lens
from speech_interp.models import hf_model
from speech_interp.organism import SHIPPED_DATA
from speech_interp.testing import tiny_model, tiny_tokenizer

from tolerance import assert_close_float, float_bound

pytestmark = pytest.mark.integration
BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(scope="module")
def heldout():
    _, utts = read_utterances(SHIPPED_DATA)
    return select_sentences(select_split(utts, "eval"), "heldout")


@pytest.fixture(scope="module")
def smol():
    model, layout = si.load("organism:smol", backend="tl")
    return model, layout, PatchscopeLens(model)


def _hooked_logits(hf, ids, layer, sources):
    """Independent reference: the whole identity prompt, no cache, one row per source, with a
    forward pre-hook on block ``layer`` that puts the source at the placeholder (last token)."""

    def put(module, args, kwargs):
        x = args[0].clone()
        x[:, -1] = sources.to(x.dtype)
        return (x, *args[1:]), kwargs

    handle = submodule(hf, "blocks")[layer].register_forward_pre_hook(put, with_kwargs=True)
    try:
        with torch.no_grad():
            return hf(ids[None].expand(len(sources), -1), use_cache=False).logits[:, -1].float()
    finally:
        handle.remove()


def _ops(hf) -> int:
    """Roundings on the logits' longest path: every block's d_model- and MLP-long sums, then the
    unembedding's d_model-long dot product (tests/tolerance.py)."""
    c = hf.config
    return c.num_hidden_layers * (c.hidden_size + c.intermediate_size) + c.hidden_size


def _sources(model, hf, layer: int) -> torch.Tensor:
    """Three sources at stream ``layer``: two of the model's own states of a text and a random
    vector of the same norm."""
    ids = model.tokenizer("the red bird sees a small dog", add_special_tokens=False).input_ids
    with torch.no_grad():
        states = hf(torch.tensor([ids]), output_hidden_states=True).hidden_states
    own = states[layer][0, [1, -1]].float()
    rand = torch.randn(own.shape[1], generator=torch.Generator().manual_seed(layer))
    return torch.cat([own, (rand / rand.norm() * own[0].norm())[None]])


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_the_cached_pass_equals_the_whole_hooked_prompt(backend, smol):
    """translate + final norm + unembedding = the model's logits at the placeholder of the whole
    prompt with the source put at block l's input, on both backends; stream L reads the source
    through the final norm and unembedding (the logit lens)."""
    model = smol[0] if backend == "tl" else si.load("organism:smol", backend="nnsight").model
    hf = hf_model(model)
    lens = smol[2] if backend == "tl" else PatchscopeLens(model)
    ids = lens.prompt_ids
    assert ids[0] == model.tokenizer.bos_token_id and model.tokenizer.decode(ids[-1:]) == "?"
    assert model.tokenizer.decode(ids[1:]) == IDENTITY_PROMPT
    L = lens.n_layers
    for layer in (0, 1, 14, L - 1):
        sources = _sources(model, hf, layer)
        expected = _hooked_logits(hf, ids, layer, sources)
        assert_close_float(lens.logits_at(layer, sources), expected, ops=_ops(hf))
        assert (lens.logits_at(layer, sources).argmax(-1) == expected.argmax(-1)).all()
    sources = _sources(model, hf, 0)
    assert torch.equal(lens.translate(L, sources), sources)
    unembed = hf.lm_head(submodule(hf, "final_norm")(sources))
    assert_close_float(lens.logits_at(L, sources), unembed, ops=_ops(hf))


def test_the_prefix_cache_is_reused_and_never_written(smol):
    """Reads of different batch sizes and streams leave the stored keys and values as they were;
    a source read alone equals its row of a batch; the same read twice is identical."""
    model, _, lens = smol
    hf = hf_model(model)
    before = [(k.clone(), v.clone()) for k, v in lens._prefix]
    sources = _sources(model, hf, 3)
    batch = lens.translate(3, sources)
    alone = torch.cat([lens.translate(3, s[None]) for s in sources])
    lens.translate(0, sources[:1])
    assert all(torch.equal(k, k0) and torch.equal(v, v0)
               for (k, v), (k0, v0) in zip(lens._prefix, before, strict=True))  # fmt: skip
    assert torch.equal(lens.translate(3, sources), batch)
    assert_close_float(alone, batch, ops=_ops(hf))
    assert lens.translate(5, sources[None]).shape == (1, *sources.shape)  # leading dims kept


@pytest.mark.parametrize("arch", ["qwen2", "llama", "helium"])
def test_other_llama_shaped_architectures_on_a_plain_hf_model(arch):
    """A plain HF model (here tiny and random, sdpa attention) with its tokenizer given."""
    tok = tiny_tokenizer("sims")
    hf = tiny_model(arch, vocab_size=len(tok), n_layers=3)
    lens = PatchscopeLens(hf, tokenizer=tok)
    assert lens.prompt_ids[0] == tok.bos_token_id == 2
    sources = torch.randn(4, hf.config.hidden_size, generator=torch.Generator().manual_seed(1))
    for layer in range(3):
        expected = _hooked_logits(hf, lens.prompt_ids, layer, sources)
        assert_close_float(lens.logits_at(layer, sources), expected, ops=_ops(hf))


def test_unsupported_architectures_are_named():
    tok = tiny_tokenizer("sims")
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4))
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        PatchscopeLens(gpt2.eval(), tokenizer=tok)


def test_registered_as_a_current_word_lens(smol):
    model, _, _ = smol
    assert LENSES["patchscope"] is PatchscopeLens
    lens = as_lens("patchscope", model)
    assert isinstance(lens, PatchscopeLens) and lens.reads == "current word"
    assert lens.n_layers == hf_model(model).config.num_hidden_layers


def test_floor_and_neighbour_rows(smol, heldout):
    """lens.csv's columns; the floor at stream 0 is the text ceiling at stream 0 (a word's
    stream-0 state is its last token's embedding row); word_ranks' current-word ranks give the
    ceiling's values; the neighbour ranks match a full-vocabulary recount by hand."""
    model, layout, lens = smol
    utts = heldout[:6]
    floor = decoder_floor(model, layout, lens, utts, n_boot=50)
    neighbours = neighbour_words(model, layout, lens, utts, n_boot=50)
    ceiling = text_ceiling(model, layout, lens, utts, n_boot=50)
    L = lens.n_layers
    for rows, metrics in (
        (floor, {"patchscope_floor"}),
        (neighbours, {"patchscope_previous_word", "patchscope_next_word"}),
    ):
        assert list(rows.columns) == LENS_COLUMNS and set(rows.metric) == metrics
        assert set(rows.k) == {1, 5} and set(rows.words) == {"all", "content"}
        assert set(rows.position_rule) == {"last"} and set(rows.lens) == {"patchscope"}
        assert sorted(rows.layer.unique()) == list(range(L + 1))
        assert (rows.ci_low <= rows.value + 1e-12).all()
        assert (rows.value <= rows.ci_high + 1e-12).all()
    key = ["layer", "k", "words"]
    first = floor[floor.layer == 0].set_index(key)[["value", "ci_low", "ci_high", "n"]]
    same = ceiling[ceiling.layer == 0].set_index(key)[["value", "ci_low", "ci_high", "n"]]
    assert first.sort_index().equals(same.sort_index())
    n_written = int(ceiling.n[ceiling.words == "all"].iloc[0])
    last_words = sum(1 for u in utts if len(u.words) > 1)
    nxt = neighbours[(neighbours.metric == "patchscope_next_word") & (neighbours.words == "all")]
    assert set(nxt.n) == {n_written - last_words}

    ranks = word_ranks(model, layout, lens, utts)
    sentences = [[w.word for w in u.words] for u in utts]
    written = written_words(layout, model.tokenizer, sentences)
    states = stream_states(model, written)
    for layer in (0, 6):
        at = ranks[ranks.layer == layer].sort_values("item")
        hits = (at.rank_current.to_numpy() < 5).mean()
        row = ceiling[(ceiling.layer == layer) & (ceiling.k == 5) & (ceiling.words == "all")]
        assert hits == pytest.approx(row.value.item(), abs=1e-12)
        logits = lens.logits_at(layer, states[layer])
        logits[:, ~layout.text_mask[: logits.shape[1]]] = float("-inf")
        tol = float_bound(float(logits[logits.isfinite()].abs().max()), ops=_ops(hf_model(model)))
        for i, row in enumerate(at.itertuples()):
            for target, rank in ((row.previous_target, row.rank_previous),
                                 (row.next_target, row.rank_next)):  # fmt: skip
                if target < 0:  # no such word (or no target): left out
                    assert np.isnan(rank)
                    continue
                # the count of text tokens above the target, up to float ties (chunked logits)
                t = logits[i, target]
                assert int((logits[i] > t + tol).sum()) <= rank <= int((logits[i] > t - tol).sum())
        last = at.word_index.to_numpy() + 1 == [len(sentences[p]) for p in at.prompt]
        assert np.isnan(at.rank_next.to_numpy()[last]).all() and last.any()


def test_bench_quick():
    cmd = [sys.executable, str(BENCH / "bench_patchscope.py"), "--sources", "2", "--layers", "3"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    ratio = re.search(r"speed ratio \(naive / ours\): ([0-9.]+)x", out.stdout)
    diff = re.search(r"max \|logit difference\|: \S+ = (\S+) of the logits' scale", out.stdout)
    assert ratio and float(ratio.group(1)) > 0, out.stdout
    # 30 blocks of 576- and 1536-long sums: 8 eps sqrt(63k) = 2.4e-4 of the scale (tolerance.py)
    assert diff and float(diff.group(1)) <= 2.4e-4, out.stdout
