"""Text substitution on a tiny random model: a zero move changes nothing, backends and nnsight's
remote simulation agree, uninformative pairs do not shift."""

import numpy as np
import pytest

from speech_interp.causal import SUBSTITUTION_COLUMNS, substitute
from speech_interp.data import make_pairs
from speech_interp.testing import causal_utterances

pytestmark = pytest.mark.integration
TOL = 1e-5


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
    for col in ("moved_own", "moved_other", "base_own", "base_other"):
        assert np.abs(a[col] - b[col]).max() <= TOL
    zero = a[a.alpha == 0.0]  # a zero move changes nothing
    assert np.allclose(zero.moved_own, zero.base_own, atol=TOL)
    assert np.abs(zero["shift"]).max() <= TOL
    moved = a[(a.alpha == 1.0) & (a.direction == "text")]
    assert (np.abs(moved.moved_own - moved.base_own) > 0).any()
    uninformative = a[~a.informative]
    assert np.abs(uninformative["shift"]).max() <= TOL  # same continuation on both sides
