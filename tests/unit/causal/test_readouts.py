"""The read-out task builder on a real SIMS token layout (tokenizer only, no model)."""

import pytest
import torch

from speech_interp.causal.readouts import continuation, why_not
from speech_interp.data import TargetResolver, Word
from speech_interp.hooks import get_family
from speech_interp.testing import tiny_tokenizer


@pytest.fixture(scope="module")
def layout_resolver():
    tok = tiny_tokenizer("sims")
    layout = get_family("sims").bind(tok)
    return layout, TargetResolver(tok, layout)


def test_speech_and_text_continuations(layout_resolver):
    layout, resolver = layout_resolver
    prefix = torch.tensor([1, 2, 3])
    nxt = Word("cat", "speech", (7, 9))
    ids, r = continuation(prefix, nxt, "speech", layout, resolver)
    units = layout.units_to_tokens([7, 9])
    assert ids.tolist() == [1, 2, 3, *units.tolist()]
    assert r.positions.tolist() == [[2, 3]] and r.targets.tolist() == [units.tolist()]
    ids, r = continuation(prefix, nxt, "text", layout, resolver)
    assert ids.tolist() == [1, 2, 3, layout.text_marker_id]
    assert r.positions.tolist() == [[3]] and r.targets.tolist() == [[resolver("cat").token_id]]


def test_why_not(layout_resolver):
    layout, resolver = layout_resolver
    assert "last word" in why_not(None, "speech", layout, resolver)
    assert "is not spoken" in why_not(Word("cat", "text"), "speech", layout, resolver)
    assert why_not(Word("cat", "text"), "text", layout, resolver) is None
    assert "no text target" in why_not(Word("<Un3>", "text"), "text", layout, resolver)
    with pytest.raises(ValueError, match="metric must be one of"):
        why_not(Word("cat"), "audio", layout, resolver)
