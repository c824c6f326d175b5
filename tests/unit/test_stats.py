"""Bootstrap CIs: seeded, reproducible, paired, and strict about bad input."""

import numpy as np
import pytest

from speech_interp.stats import bootstrap_ci, paired_excess


def test_bootstrap_is_reproducible_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    values = rng.random(50)
    first = bootstrap_ci(values, n_boot=500, seed=3)
    assert first == bootstrap_ci(values, n_boot=500, seed=3)
    assert first != bootstrap_ci(values, n_boot=500, seed=4)
    mean, lo, hi = first
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi


def test_constant_values_give_a_degenerate_interval():
    assert bootstrap_ci(np.ones(7)) == (1.0, 1.0, 1.0)
    assert bootstrap_ci([0.25]) == (0.25, 0.25, 0.25)


def test_bernoulli_interval_width_matches_the_normal_approximation():
    values = np.r_[np.ones(200), np.zeros(200)]
    _, lo, hi = bootstrap_ci(values, n_boot=4000, seed=0)
    expected = 2 * 1.96 * np.sqrt(0.25 / 400)
    assert hi - lo == pytest.approx(expected, rel=0.1)


def test_columns_are_resampled_like_single_calls():
    rng = np.random.default_rng(0)
    table = rng.random((30, 4))
    mean, lo, hi = bootstrap_ci(table, n_boot=300, seed=5)
    for j in range(4):
        assert (mean[j], lo[j], hi[j]) == pytest.approx(
            bootstrap_ci(table[:, j], n_boot=300, seed=5)
        )


def test_paired_excess_resamples_the_same_items():
    rng = np.random.default_rng(2)
    base = rng.random(40)
    a, b = base + 0.1, base  # a constant shift: the paired difference has no spread
    assert paired_excess(a, b, n_boot=300) == pytest.approx((0.1, 0.1, 0.1))
    unpaired_width = np.subtract(*bootstrap_ci(a, n_boot=300)[2:0:-1])
    assert unpaired_width > 0.05
    diff = rng.random(40)
    assert paired_excess(diff, np.zeros(40), n_boot=300, seed=1) == bootstrap_ci(
        diff, n_boot=300, seed=1
    )


@pytest.mark.parametrize(
    "values, match",
    [
        ([], "empty"),
        ([0.1, np.nan], "NaN"),
        (np.zeros((2, 2, 2)), "must be"),
    ],
)
def test_bad_values_are_errors(values, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(values)


def test_bad_parameters_are_errors():
    with pytest.raises(ValueError, match="equal shapes"):
        paired_excess(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(np.zeros(3), alpha=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(np.zeros(3), n_boot=0)


def test_cluster_bootstrap_resamples_whole_clusters():
    rng = np.random.default_rng(0)
    # 10 clusters of 20 identical occurrences: the occurrence bootstrap treats 200 values as
    # independent and is far too narrow; the cluster bootstrap sees 10 values
    cluster_means = rng.normal(size=10)
    values = np.repeat(cluster_means, 20)
    labels = np.repeat([f"w{i}" for i in range(10)], 20)
    mean, lo, hi = bootstrap_ci(values, n_boot=2000, seed=1, clusters=labels)
    _, lo_items, hi_items = bootstrap_ci(values, n_boot=2000, seed=1)
    _, lo_means, hi_means = bootstrap_ci(cluster_means, n_boot=2000, seed=1)
    assert mean == pytest.approx(values.mean())
    assert (hi - lo) > 3 * (hi_items - lo_items)
    assert (hi - lo) == pytest.approx(hi_means - lo_means, rel=0.15)
    # one item per cluster is the item bootstrap, draw for draw
    singletons = bootstrap_ci(cluster_means, n_boot=500, seed=2, clusters=np.arange(10))
    assert singletons == bootstrap_ci(cluster_means, n_boot=500, seed=2)
    # unequal clusters: a resample's statistic is the mean over the drawn clusters' items
    a, b, c = paired_excess(values, np.zeros(200), n_boot=300, seed=1, clusters=labels)
    assert (a, b, c) == bootstrap_ci(values, n_boot=300, seed=1, clusters=labels)
    with pytest.raises(ValueError, match="one label per item"):
        bootstrap_ci(values, clusters=labels[:5])
