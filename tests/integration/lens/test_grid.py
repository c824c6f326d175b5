"""The viewer's grid against the lens's own scoring and a hand-written softmax."""

import pytest
import torch

import speech_interp as si
from speech_interp.data import TargetResolver, read_utterances, select_sentences, select_split
from speech_interp.lens.grid import lens_grid
from speech_interp.organism import SHIPPED_DATA

pytestmark = pytest.mark.integration


def test_grid_matches_run_lens_and_a_hand_softmax():
    model, layout = si.load("organism:planted")
    _, utts = read_utterances(SHIPPED_DATA)
    utt = select_sentences(select_split(utts, "eval"), "heldout")[0]
    prompt = utt.to_prompt(layout, model.tokenizer)
    resolver = TargetResolver(model.tokenizer, layout)
    own = torch.full((len(prompt),), -1)
    for w, word in enumerate(utt.words):
        own[prompt.word_positions[w]] = resolver(word.word).token_id
    grid = lens_grid(model, layout, prompt, own, k=3)
    words = si.run_lens(model, layout, [utt], progress=False, n_boot=20).words
    for row in words.itertuples():  # the lens's chunked ranks at each word's last position
        last = int(prompt.word_positions[row.word_index][-1])
        assert grid.own_rank[row.layer, last] == row.rank_text_last
    hf = si.hf_model(model)
    with torch.no_grad():
        hidden = hf(prompt.input_ids[None], output_hidden_states=True).hidden_states
        logits = hf.lm_head(hf.model.norm(hidden[3]))[0].double()
    probs = logits.softmax(-1)
    text = layout.text_mask
    top = logits.masked_fill(~text, -torch.inf).topk(3, dim=-1)
    assert torch.equal(grid.top_ids[3], top.indices)
    torch.testing.assert_close(grid.top_probs[3].double(), probs.gather(-1, top.indices),
                               rtol=1e-4, atol=1e-6)  # fmt: skip
    has = own >= 0
    own_p = probs.gather(-1, own.clamp_min(0)[:, None])[:, 0]
    torch.testing.assert_close(grid.own_prob[3][has].double(), own_p[has], rtol=1e-4, atol=1e-6)
    assert grid.own_prob[3][~has].isnan().all()
