"""The edit rule on plain tensors (what TL hooks and nnsight traces both apply), no model."""

import torch

from speech_interp.core.edits import Edit, apply_to_copy, merge_edits

from tolerance import assert_close_float


def test_edit_rule():
    x = torch.randn(3, 5, 8)
    u = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    e = Edit.project(0, "resid_pre", [0, 2], [1, 4], u)
    y = apply_to_copy(x, merge_edits([e])[(0, "resid_pre")])
    # float32 rounding of 8-long dot products at the size of x (unprojected: x . u, of that size)
    for (i, j), k in (((0, 1), 0), ((2, 4), 1)):
        assert_close_float((y[i, j] * u[k]).sum(), 0.0, ops=8, scale=float(x[i, j].norm()))
    untouched = torch.ones(3, 5, dtype=torch.bool)
    untouched[0, 1] = untouched[2, 4] = False
    assert torch.equal(y[untouched], x[untouched])
    zero = Edit.project(0, "resid_pre", [1], [2], torch.zeros(1, 8))
    assert torch.equal(apply_to_copy(x, merge_edits([zero])[(0, "resid_pre")]), x)
    vals = torch.randn(1, 8)
    s = apply_to_copy(x, merge_edits([Edit.set(0, "mlp_out", [1], [3], vals)])[(0, "mlp_out")])
    assert torch.equal(s[1, 3], vals[0])
