"""Bootstrap confidence intervals over items (words), seeded and reproducible.

Both functions resample with replacement (percentile bootstrap). They accept one value per item
(``[n]``) or several statistics per item (``[n, m]``, e.g. one column per layer); every column is
resampled with the same draws, so the intervals of different columns stay comparable and a whole
table costs one matrix product per batch of resamples. NaN values are an error: select the items a
statistic is defined for before calling, and report how many were left out.

**Clusters** (``clusters=``, e.g. the word type of each word occurrence): occurrences of one word
type are not independent draws, so the cluster bootstrap resamples whole clusters with
replacement and each resample's statistic is the mean over the items of the drawn clusters
(sum of their values / number of their items). The point estimate stays the mean over items.
Without ``clusters`` every item is its own cluster.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

_MAX_WEIGHTS = 4_000_000  # resampling weights held at once (resamples x items)


def _as_items(values, name: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be [n] or [n, m], got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: a bootstrap needs at least one item")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or inf; select the items the statistic is defined for")
    return arr


def _cluster_sums(arr: np.ndarray, clusters) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster: the sum of its items' values ``[c, m]`` and its item count ``[c]``."""
    flat = arr.reshape(arr.shape[0], -1)
    if clusters is None:
        return flat, np.ones(arr.shape[0])
    labels = np.asarray(clusters)
    if labels.shape != (arr.shape[0],):
        raise ValueError(
            f"clusters must hold one label per item ({arr.shape[0]}), got shape {labels.shape}"
        )
    _, index = np.unique(labels, return_inverse=True)
    sums = np.zeros((int(index.max()) + 1, flat.shape[1]))
    np.add.at(sums, index, flat)
    return sums, np.bincount(index).astype(np.float64)


def _boot_means(arr: np.ndarray, n_boot: int, seed: int, clusters=None) -> np.ndarray:
    """Means of ``n_boot`` cluster resamples: ``[n_boot, m]`` (multinomial resampling weights)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    sums, sizes = _cluster_sums(arr, clusters)
    c = sums.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, sums.shape[1]))
    batch = max(1, min(n_boot, _MAX_WEIGHTS // c))
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        counts = rng.multinomial(c, np.full(c, 1.0 / c), size=size)
        out[start : start + size] = (counts @ sums) / (counts @ sizes)[:, None]
    return out


def _interval(arr: np.ndarray, n_boot: int, seed: int, alpha: float, clusters=None):
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    boots = _boot_means(arr, n_boot, seed, clusters)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2], axis=0)
    mean = arr.reshape(arr.shape[0], -1).mean(axis=0)
    if arr.ndim == 1:
        return float(mean[0]), float(lo[0]), float(hi[0])
    return mean, lo, hi


def bootstrap_ci(
    values: Float[np.ndarray, "n ..."],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    clusters=None,
) -> tuple:
    """Mean and percentile-bootstrap ``1 - alpha`` interval: ``(mean, lo, hi)``.

    Floats for ``[n]`` input, arrays of length m for ``[n, m]`` input. ``clusters``: one label
    per item to resample clusters instead of items (module docstring).
    """
    return _interval(_as_items(values), n_boot, seed, alpha, clusters)


def paired_excess(
    a: Float[np.ndarray, "n ..."],
    b: Float[np.ndarray, "n ..."],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    clusters=None,
) -> tuple:
    """Mean of ``a - b`` with a paired bootstrap interval (the same items resampled for both;
    ``clusters`` as for :func:`bootstrap_ci`)."""
    a_arr, b_arr = _as_items(a, "a"), _as_items(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired values need equal shapes, got {a_arr.shape} and {b_arr.shape}")
    return _interval(a_arr - b_arr, n_boot, seed, alpha, clusters)


__all__ = ["bootstrap_ci", "paired_excess"]
