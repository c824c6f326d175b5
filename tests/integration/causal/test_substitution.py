"""Text substitution on a tiny random model: a zero move changes nothing, backends and nnsight's
remote simulation agree, uninformative pairs do not shift."""

import numpy as np
import pandas as pd
import pytest

from speech_interp.causal import SUBSTITUTION_COLUMNS, substitute
from speech_interp.causal.substitution import SUBSTITUTION_SKIPPED_COLUMNS
from speech_interp.data import make_pairs
from speech_interp.testing import causal_utterances

from tolerance import TINY_READOUT_OPS, assert_close_float

pytestmark = pytest.mark.integration
METRICS = ["moved_own", "moved_other", "base_own", "base_other"]


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(causal_utterances(), seed=1, max_pairs=6)


@pytest.mark.parametrize("remote", [False, "local"])
def test_substitution_backends_agree(models, pairs, remote):
    kw = dict(band="1-1", alphas=(0.0, 1.0), n_random=3, progress=False)
    a = substitute(models["tl"], models["layout"], pairs, **kw)
    b = substitute(models["nnsight"], models["layout"], pairs, remote=remote, **kw)
    assert list(a.columns) == SUBSTITUTION_COLUMNS and len(a) == len(b) > 0
    assert set(a.direction) == {"text", "random"}
    # float32 rounding of log-probability read-outs of size ~20 (shift: differences of them);
    # a wrong edit moves them by the text direction's effect, well above (~0.2 here)
    scale = float(np.abs(a[METRICS]).max().max())

    def close(actual, expected):
        assert_close_float(actual, expected, ops=TINY_READOUT_OPS, scale=scale)

    for col in METRICS:
        close(b[col], a[col])
    zero = a[a.alpha == 0.0]  # a zero move changes nothing
    close(zero.moved_own, zero.base_own)
    close(zero["shift"], 0 * zero["shift"])
    moved = a[(a.alpha == 1.0) & (a.direction == "text")]
    assert (np.abs(moved.moved_own - moved.base_own) > 0).any()
    uninformative = a[~a.informative]
    close(uninformative["shift"], 0 * uninformative["shift"])  # same continuation on both sides


def test_substitution_lists_what_it_skips(models, pairs):
    """A pair without a next word on one side is listed with its reason, never dropped."""
    from dataclasses import replace

    cut = replace(pairs[0], donor_next=None)  # the donor word ends its utterance
    with pytest.warns(UserWarning, match="skipped"):
        table = substitute(models["tl"], models["layout"], [cut, *pairs[1:]], band="1-1",
                           n_random=1, progress=False)  # fmt: skip
    skipped = pd.DataFrame(table.attrs["skipped"])
    assert list(skipped.columns) == SUBSTITUTION_SKIPPED_COLUMNS
    mine = skipped[skipped["pair"] == cut.id]
    assert set(mine["reason"]) == {"no next word on the donor side"} and len(mine) == 2
    assert cut.id not in set(table["pair"])
    # every (pair, metric) is either read or listed
    read = set(zip(table["pair"], table["metric"], strict=True))
    listed = set(zip(skipped["pair"], skipped["metric"], strict=True))
    assert read.isdisjoint(listed)
    assert read | listed == {(p.id, m) for p in [cut, *pairs[1:]] for m in ("speech", "text")}
    both = pd.concat([table, table])  # the records survive a concat (a frame in attrs would not)
    assert both.attrs["skipped"] == table.attrs["skipped"]
