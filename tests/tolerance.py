"""Tolerances from float rounding, relative to the values' scale, so a test holds on any CPU.

Two correct float32 computations of the same value that order their operations differently
(another CPU's SIMD width or BLAS kernel, another batch shape, a cached prefix) differ by about
``sqrt(ops) * eps * scale``: ``scale`` the size of the values the computation adds up, ``ops``
the roundings accumulated on the longest path (a reduction's length, times the layers it goes
through). An absolute bound ignores the scale: 1e-5 is 4 float32 ulps of a log-probability sum
of size 20, which another machine's rounding can pass (issue 38: logits of size 14 off by 0.0024,
float32 rounding of ``W + s * B @ A``, failed an absolute 2e-3).

``assert_close_float`` allows ``HEADROOM * eps * sqrt(ops) * scale``; tests that must be exact
(determinism, the same code path on the same input) compare with equality instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Headroom over the sqrt(ops) random-walk estimate: error grows through depth, not only by the
# random walk (the 0.0024 at scale 14 is 1440 eps = 6.7 x sqrt(30 layers x 1536)).
HEADROOM = 8


def _eps(dtype) -> float:
    return float(torch.finfo(dtype).eps)


def float_bound(scale: float, *, ops: int, dtype=torch.float32) -> float:
    """``HEADROOM * eps(dtype) * sqrt(ops) * scale``: the rounding a value of size ``scale``
    may carry after ``ops`` accumulated roundings."""
    return HEADROOM * _eps(dtype) * math.sqrt(ops) * float(scale)


def _array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    if hasattr(x, "to_numpy"):  # pandas
        x = x.to_numpy()
    return np.asarray(x, dtype=np.float64)


def assert_close_float(actual, expected, *, ops: int, scale: float | None = None,
                       dtype=torch.float32) -> None:  # fmt: skip
    """``max |actual - expected| <= float_bound(scale, ops=ops)``; ``scale`` defaults to
    ``max |expected|`` (the values' size). NaNs must sit at the same places."""
    a, e = _array(actual), _array(expected)
    assert a.shape == e.shape, f"shapes differ: {a.shape} vs {e.shape}"
    nan = np.isnan(e)
    assert (np.isnan(a) == nan).all(), "NaNs at other places"
    a, e = a[~nan], e[~nan]
    if scale is None:
        scale = float(np.abs(e).max()) if e.size else 0.0
    bound = float_bound(scale, ops=ops, dtype=dtype)
    diff = float(np.abs(a - e).max()) if e.size else 0.0
    ulps = diff / (_eps(dtype) * scale) if scale else math.inf
    assert diff <= bound, (
        f"max |actual - expected| = {diff:.3g} > {bound:.3g} = {HEADROOM} eps x sqrt({ops}) x "
        f"scale {scale:.3g} ({ulps:.1f} eps of the scale)"
    )


# A log-probability read-out of the tiny test models (speech_interp.testing: 2 blocks of 32- and
# 64-long dot products, then a log-sum-exp over the SIMS layout's 848 tokens).
TINY_READOUT_OPS = 2 * (32 + 64) + 848
