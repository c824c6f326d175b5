"""Memory planning of patching batches: the estimate, the automatic batch size and the early
error on a batch too large for the free memory."""

import pytest

from speech_interp.causal import patch_sweep
from speech_interp.core.memory import GiB, free_bytes, patch_batch_bytes, plan_batch_size
from speech_interp.data.pairs import make_pairs
from speech_interp.testing import causal_utterances

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model(models):
    return models["tl"]


def test_estimate_grows_with_batch_tokens_and_readout(model):
    base = patch_batch_bytes(model, 100, 4, 8)
    assert 0 < base < patch_batch_bytes(model, 100, 4, 16)
    assert base < patch_batch_bytes(model, 200, 4, 8) and base < patch_batch_bytes(model, 100, 8, 8)
    # linear in the batch: two batches of 8 need what one of 16 needs
    assert 2 * base == patch_batch_bytes(model, 100, 4, 16)
    assert free_bytes("cpu") > 0


def test_plan_picks_the_largest_power_of_two_that_fits(model):
    one = patch_batch_bytes(model, 100, 4, 1)
    free = int(37.5 * one / 0.8)  # 80% of it holds 37.5 cells
    assert plan_batch_size(model, 100, 4, free=free) == 32
    assert plan_batch_size(model, 100, 4, requested=37, free=free) == 37
    with pytest.raises(ValueError, match=r"a batch of 38 patched cells .* at most 32"):
        plan_batch_size(model, 100, 4, requested=38, free=free)
    with pytest.raises(ValueError, match="even one patched cell"):
        plan_batch_size(model, 100, 4, free=one)
    assert plan_batch_size(model, 100, 4, free=1000 * GiB, cap=64) == 64


def test_sweep_sizes_its_batches_and_refuses_too_large_ones(models, tmp_path):
    model, layout = models["tl"], models["layout"]
    pairs = make_pairs(causal_utterances(), seed=0, max_pairs=1)
    auto = patch_sweep(model, layout, pairs, batch_size=None, progress=False, metrics=["speech"])
    assert auto.batch_size >= 1 and auto.batch_size & (auto.batch_size - 1) == 0
    fixed = patch_sweep(model, layout, pairs, batch_size=3, progress=False, metrics=["speech"],
                        out_dir=tmp_path)  # fmt: skip
    assert (fixed.table.value.fillna(9) == auto.table.value.fillna(9)).all()
    # resuming with the automatic size runs the checkpoint's batches again
    again = patch_sweep(model, layout, pairs, batch_size=None, progress=False, metrics=["speech"],
                        out_dir=tmp_path)  # fmt: skip
    assert again.batch_size == 3
    with pytest.raises(ValueError, match="needs about .* GiB"):
        patch_sweep(model, layout, pairs, batch_size=10**9, progress=False, metrics=["speech"])
