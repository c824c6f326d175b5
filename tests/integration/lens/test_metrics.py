"""The difference of two runs' excesses."""

import pytest

pytestmark = pytest.mark.integration
N_BOOT = 200


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


def test_pooled_difference_averages_the_pairs_per_word(tl_result):
    """Pooled over two pairs (a model vs a blinded copy, and the model vs itself), the mean is
    half the one-pair difference, computed by hand; a single pair is excess_difference."""
    from speech_interp.lens.metrics import excess_difference, pooled_excess_difference

    w = tl_result.words
    blind = w.copy()
    blind["rank_text_after_uniqueness"] = 10**6
    blind["control_rank_text_after_uniqueness"] = 10**6
    one = pooled_excess_difference([(w, blind, 2, 2)], k=10, n_boot=N_BOOT)
    assert one == excess_difference(w, blind, 2, 2, k=10, n_boot=N_BOOT)
    mean, lo, hi, n = pooled_excess_difference([(w, blind, 2, 2), (w, w, 1, 1)], k=10,
                                               n_boot=N_BOOT)  # fmt: skip
    at2 = w[(w.layer == 2) & w.content & (w.control_id >= 0)]
    by_hand = ((at2.rank_text_after_uniqueness < 10).mean()
               - (at2.control_rank_text_after_uniqueness < 10).mean()) / 2  # fmt: skip
    assert mean == pytest.approx(by_hand) and lo <= mean <= hi and n == len(at2)
    with pytest.raises(ValueError, match="no pair"):
        pooled_excess_difference([])
