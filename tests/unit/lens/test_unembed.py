"""Chunked vocabulary scoring against brute force, including the tie rule (no model needed).

Every scoring test runs under both ways of counting ranks (compare each query with its row, or
sort each row once and search it), forced by the ``counting`` fixture.
"""

from types import SimpleNamespace

import pytest
import torch

from speech_interp.lens import Unembedding, score_hidden
from speech_interp.lens import unembed as unembed_module


@pytest.fixture(params=["count", "sort"], autouse=True)
def counting(request, monkeypatch):
    """Force one way of counting ranks (queries per row from which rows are sorted)."""
    threshold = 0.0 if request.param == "sort" else float("inf")
    monkeypatch.setattr(unembed_module, "SORT_FROM_QUERIES_PER_ROW", threshold)
    return request.param


def _setup(vocab=23, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(vocab, d, generator=g)
    weight[5] = weight[4]  # an exact tie between tokens 4 and 5
    speech = torch.zeros(vocab, dtype=torch.bool)
    speech[15:] = True
    text = ~speech
    text[0] = False  # a special token
    layout = SimpleNamespace(vocab_size=vocab, text_mask=text, speech_mask=speech)
    hidden = torch.randn(3, d, generator=g)
    return Unembedding(torch.nn.Identity(), weight), layout, hidden


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 100])
def test_scores_match_brute_force(chunk_size):
    unembed, layout, hidden = _setup()
    qpos = torch.tensor([0, 1, 2, 2, 0])
    qtok = torch.tensor([4, 5, 3, 14, 5])
    s = score_hidden(hidden, unembed, qpos, qtok, layout, chunk_size)
    logits = hidden @ unembed.weight.T
    for j, (p, t) in enumerate(zip(qpos.tolist(), qtok.tolist(), strict=True)):
        others = torch.ones(layout.vocab_size, dtype=torch.bool)
        others[t] = False
        above = (logits[p] > logits[p, t]) & others
        assert int(s.rank_full[j]) == int(above.sum())
        assert int(s.rank_text[j]) == int((above & layout.text_mask).sum())
    probs = logits.double().softmax(-1)
    # log-sum-exp runs in float32 within a chunk: float32 precision, whatever the chunking
    expected = probs[:, layout.speech_mask].sum(-1)
    torch.testing.assert_close(s.speech_mass, expected, rtol=1e-5, atol=1e-6)
    text_logits = logits.masked_fill(~layout.text_mask, -torch.inf)
    assert s.top_text_id.tolist() == text_logits.argmax(-1).tolist()


@pytest.mark.parametrize("chunk_size", [1, 5, 100])
def test_max_pooled_ranks_match_brute_force(chunk_size):
    unembed, layout, hidden = _setup(seed=1)
    pools = torch.tensor([0, 0, 1])  # rows 0 and 1 pool together, row 2 alone
    pq, pt = torch.tensor([0, 0, 1, 0]), torch.tensor([4, 5, 3, 16])
    s = score_hidden(
        hidden, unembed, torch.tensor([0]), torch.tensor([2]), layout, chunk_size,
        pool_of_pos=pools, pool_query=pq, pool_tok=pt,
    )  # fmt: skip
    logits = hidden @ unembed.weight.T
    pooled = torch.stack([logits[:2].max(0).values, logits[2]])
    for j, (g, t) in enumerate(zip(pq.tolist(), pt.tolist(), strict=True)):
        others = torch.ones(layout.vocab_size, dtype=torch.bool)
        others[t] = False
        above = (pooled[g] > pooled[g, t]) & others
        assert int(s.pooled_rank_full[j]) == int(above.sum())
        assert int(s.pooled_rank_text[j]) == int((above & layout.text_mask).sum())
    assert s.pooled_rank_full[0] == s.pooled_rank_full[1]  # the tie survives pooling
    with pytest.raises(ValueError, match="pool_of_pos"):
        score_hidden(hidden, unembed, torch.tensor([0]), torch.tensor([2]), layout,
                     pool_query=pq, pool_tok=pt)  # fmt: skip


def test_tied_tokens_count_in_the_targets_favour():
    unembed, layout, hidden = _setup()
    logits = hidden @ unembed.weight.T
    # tokens 4 and 5 have identical logits: neither outranks the other
    s = score_hidden(hidden, unembed, torch.tensor([0, 0]), torch.tensor([4, 5]), layout, 3)
    assert s.rank_full[0] == s.rank_full[1] == int((logits[0] > logits[0, 4]).sum())


def test_bad_scoring_input():
    unembed, layout, hidden = _setup()
    with pytest.raises(ValueError, match="chunk_size"):
        score_hidden(hidden, unembed, torch.tensor([0]), torch.tensor([1]), layout, 0)
    with pytest.raises(ValueError, match="query tokens"):
        score_hidden(hidden, unembed, torch.tensor([0]), torch.tensor([99]), layout)
    layout.vocab_size = 10
    with pytest.raises(ValueError, match="token layout has 10 ids"):
        score_hidden(hidden, unembed, torch.tensor([0]), torch.tensor([1]), layout)
    with pytest.raises(ValueError, match="meta device"):
        Unembedding(torch.nn.Identity(), torch.empty(4, 2, device="meta"))


@pytest.mark.parametrize("chunk_size", [1, 17, 1000])
def test_many_queries_per_row_match_brute_force(chunk_size):
    """Rows carrying many queries (the case rows are sorted for), repeated queries, tied tokens
    spread over chunks and a row without queries."""
    g = torch.Generator().manual_seed(2)
    vocab, d = 120, 5
    weight = torch.randn(vocab, d, generator=g)
    weight[60:70] = weight[10]  # ten tokens tied with token 10, in other chunks
    speech = torch.zeros(vocab, dtype=torch.bool)
    speech[80:] = True
    layout = SimpleNamespace(vocab_size=vocab, text_mask=~speech, speech_mask=speech)
    unembed = Unembedding(torch.nn.Identity(), weight)
    hidden = torch.randn(4, d, generator=g)
    qpos = torch.tensor([0] * 12 + [2] * 9 + [3])  # row 1 has no query
    qtok = torch.randint(0, vocab, (qpos.numel(),), generator=g)
    qtok[:3] = torch.tensor([10, 65, 10])
    s = score_hidden(hidden, unembed, qpos, qtok, layout, chunk_size)
    logits = hidden @ weight.T
    for j, (p, t) in enumerate(zip(qpos.tolist(), qtok.tolist(), strict=True)):
        above = logits[p] > logits[p, t]
        assert int(s.rank_full[j]) == int(above.sum())
        assert int(s.rank_text[j]) == int((above & layout.text_mask).sum())


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 100])
def test_kl_to_reference_and_full_top1_match_brute_force(chunk_size):
    unembed, layout, hidden = _setup(seed=2)
    hidden = hidden * 3.0  # peaked distributions: the online rescaling matters
    refs = torch.tensor([2, 2, 2])  # every row against row 2 (row 2 against itself: KL 0)
    empty = torch.zeros(0, dtype=torch.long)
    s = score_hidden(hidden, unembed, empty, empty, layout, chunk_size, reference_rows=refs)
    logp = (hidden @ unembed.weight.T).double().log_softmax(-1)
    expected = (logp[refs].exp() * (logp[refs] - logp)).sum(-1)
    torch.testing.assert_close(s.kl_to_ref, expected, rtol=1e-5, atol=1e-6)
    assert float(s.kl_to_ref[2]) == pytest.approx(0.0, abs=1e-6)
    assert s.top_full_id.tolist() == logp.argmax(-1).tolist()
    no_refs = score_hidden(hidden, unembed, empty, empty, layout, chunk_size)
    assert torch.isnan(no_refs.kl_to_ref).all()
