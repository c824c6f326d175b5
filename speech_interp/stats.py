"""Bootstrap confidence intervals over items (words), seeded and reproducible.

Both functions resample *items* with replacement (percentile bootstrap). They accept one value per
item (``[n]``) or several statistics per item (``[n, m]``, e.g. one column per layer); every column
is resampled with the same draws, so the intervals of different columns stay comparable and a
whole table costs one matrix product per batch of resamples. NaN values are an error: select the
items a statistic is defined for before calling, and report how many were left out.
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


def _boot_means(arr: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` item resamples: ``[n_boot, m]`` (multinomial resampling weights)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n = arr.shape[0]
    rng = np.random.default_rng(seed)
    flat = arr.reshape(n, -1)
    out = np.empty((n_boot, flat.shape[1]))
    batch = max(1, min(n_boot, _MAX_WEIGHTS // n))
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=size)
        out[start : start + size] = counts @ flat / n
    return out


def _interval(arr: np.ndarray, n_boot: int, seed: int, alpha: float):
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    boots = _boot_means(arr, n_boot, seed)
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
) -> tuple:
    """Mean and percentile-bootstrap ``1 - alpha`` interval over items: ``(mean, lo, hi)``.

    Floats for ``[n]`` input, arrays of length m for ``[n, m]`` input.
    """
    return _interval(_as_items(values), n_boot, seed, alpha)


def paired_excess(
    a: Float[np.ndarray, "n ..."],
    b: Float[np.ndarray, "n ..."],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple:
    """Mean of ``a - b`` with a paired bootstrap interval (the same items resampled for both)."""
    a_arr, b_arr = _as_items(a, "a"), _as_items(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired values need equal shapes, got {a_arr.shape} and {b_arr.shape}")
    return _interval(a_arr - b_arr, n_boot, seed, alpha)


__all__ = ["bootstrap_ci", "paired_excess"]
