"""The word-identity probe and random directions of the ablation, no model."""

import torch

from speech_interp.causal.ablation import fit_probe, random_directions


def test_fit_probe_separates_words():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=gen) * 3
    labels = ["cat", "dog", "bird"] * 20
    x = centers[torch.tensor([0, 1, 2] * 20)] + 0.3 * torch.randn(60, 16, generator=gen)
    probe = fit_probe(x, labels, stream=1, seed=0, steps=100)
    assert probe.accuracy == 1.0
    d = probe.direction("Cat")
    assert d is not None and torch.allclose(d.norm(), torch.tensor(1.0))
    assert probe.direction("fish") is None
    r = random_directions(20, 16, seed=1)
    assert torch.allclose(r.norm(dim=-1), torch.ones(20))
    assert torch.equal(r, random_directions(20, 16, seed=1))
