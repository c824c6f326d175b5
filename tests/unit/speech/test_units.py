"""Unit sequences, deduplication and nearest-centroid assignment."""

import pytest
import torch

from speech_interp.speech import (
    UnitExtractor,
    UnitSequence,
    dedup_units,
    extract_units,
    kmeans_assign,
    no_dedup,
)


def test_dedup_hand_built_example():
    seq = dedup_units(torch.tensor([5, 5, 7, 7, 7, 5]), 25.0)
    assert seq.units.tolist() == [5, 7, 5]
    assert torch.allclose(seq.starts, torch.tensor([0.0, 0.08, 0.2]))
    assert torch.allclose(seq.ends, torch.tensor([0.08, 0.2, 0.24]))
    assert len(seq) == 3 and seq.frame_rate == 25.0


def test_dedup_single_run_and_no_repeats():
    seq = dedup_units(torch.tensor([3, 3, 3]), 50.0)
    assert seq.units.tolist() == [3]
    assert torch.allclose(seq.ends, torch.tensor([0.06]))
    seq = dedup_units(torch.tensor([1, 2, 1]), 10.0)
    assert seq.units.tolist() == [1, 2, 1]
    assert torch.allclose(seq.starts, torch.tensor([0.0, 0.1, 0.2]))


def test_no_dedup_keeps_every_frame():
    seq = no_dedup(torch.tensor([5, 5, 7]), 25.0)
    assert seq.units.tolist() == [5, 5, 7]
    assert torch.allclose(seq.starts, torch.tensor([0.0, 0.04, 0.08]))
    assert torch.allclose(seq.ends, torch.tensor([0.04, 0.08, 0.12]))


def test_dedup_rejects_bad_frames():
    with pytest.raises(ValueError, match="no frames"):
        dedup_units(torch.tensor([], dtype=torch.long), 25.0)
    with pytest.raises(ValueError, match="integer"):
        dedup_units(torch.tensor([1.0, 2.0]), 25.0)
    with pytest.raises(ValueError, match="1-D"):
        dedup_units(torch.zeros(2, 2, dtype=torch.long), 25.0)
    with pytest.raises(ValueError, match="frame_rate"):
        dedup_units(torch.tensor([1]), 0.0)


def test_unit_sequence_validation():
    units = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="lengths differ"):
        UnitSequence(units, torch.tensor([0.0]), torch.tensor([0.1, 0.2]), 10.0)
    with pytest.raises(ValueError, match="unit 1 ends before it starts"):
        UnitSequence(units, torch.tensor([0.0, 0.3]), torch.tensor([0.1, 0.2]), 10.0)
    with pytest.raises(ValueError, match="1-D"):
        UnitSequence(units[None], torch.zeros(1, 2), torch.zeros(1, 2), 10.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        UnitSequence(units, torch.tensor([0.2, 0.0]), torch.tensor([0.3, 0.1]), 10.0)


class Fixed:
    """A toy extractor: one unit per 640 samples, cycling through a pattern."""

    n_units = 4
    frame_rate = 25.0

    def __init__(self, pattern):
        self.pattern = torch.tensor(pattern)

    def frame_units(self, wave):
        n = wave.shape[0] // 640
        return self.pattern[torch.arange(n) % len(self.pattern)]


def test_extract_units_dedup_and_not():
    ex = Fixed([0, 0, 3])
    assert isinstance(ex, UnitExtractor)
    wave = torch.randn(640 * 6)
    assert extract_units(ex, wave).units.tolist() == [0, 3, 0, 3]
    assert extract_units(ex, wave, dedup=False).units.tolist() == [0, 0, 3, 0, 0, 3]


def test_extract_units_checks_input_and_ids():
    with pytest.raises(ValueError, match="1-D float waveform"):
        extract_units(Fixed([0]), torch.randn(2, 640))
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        extract_units(Fixed([7]), torch.randn(640))


def test_kmeans_assign_matches_cdist():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(1000, 16, generator=gen)
    cents = torch.randn(37, 16, generator=gen)
    expected = torch.cdist(feats.double(), cents.double()).argmin(dim=1)
    assert torch.equal(kmeans_assign(feats, cents, chunk_size=97), expected)


def test_kmeans_assign_shape_errors():
    with pytest.raises(ValueError, match="feature dim 3 does not match centroid dim 4"):
        kmeans_assign(torch.zeros(5, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least one centroid"):
        kmeans_assign(torch.zeros(5, 3), torch.zeros(0, 3))
