"""Discrete speech units: timed unit sequences, deduplication and nearest-centroid assignment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True)
class UnitSequence:
    """Units with their time spans in seconds; unit ``i`` covers ``[starts[i], ends[i])``."""

    units: Int[Tensor, " n"]
    starts: Float[Tensor, " n"]
    ends: Float[Tensor, " n"]
    frame_rate: float

    def __post_init__(self) -> None:
        for name in ("units", "starts", "ends"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.ndim != 1:
                raise ValueError(f"UnitSequence.{name} must be a 1-D tensor")
        if self.units.is_floating_point() or self.units.dtype == torch.bool:
            raise ValueError(f"UnitSequence.units must be integer, got {self.units.dtype}")
        if not (self.starts.is_floating_point() and self.ends.is_floating_point()):
            raise ValueError("UnitSequence.starts and .ends must be floating-point seconds")
        lengths = {len(self.units), len(self.starts), len(self.ends)}
        if len(lengths) != 1:
            raise ValueError(
                f"UnitSequence lengths differ: units {len(self.units)}, "
                f"starts {len(self.starts)}, ends {len(self.ends)}"
            )
        if not self.frame_rate > 0:
            raise ValueError(f"UnitSequence.frame_rate must be positive, got {self.frame_rate}")
        bad = torch.nonzero(self.ends < self.starts).flatten()
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"UnitSequence unit {i} ends before it starts "
                f"({float(self.ends[i])} < {float(self.starts[i])})"
            )
        if len(self.starts) > 1 and bool((self.starts[1:] < self.starts[:-1]).any()):
            raise ValueError("UnitSequence.starts must be non-decreasing (units in time order)")

    def __len__(self) -> int:
        return len(self.units)


@runtime_checkable
class UnitExtractor(Protocol):
    """Anything that maps a 16 kHz mono waveform to one unit id per frame."""

    n_units: int
    frame_rate: float

    def frame_units(self, wave: Float[Tensor, " samples"]) -> Int[Tensor, " frames"]: ...


def dedup_units(frame_units: Int[Tensor, " frames"], frame_rate: float) -> UnitSequence:
    """Merge runs of repeated consecutive units.

    Frame ``i`` covers ``[i / frame_rate, (i + 1) / frame_rate)``; a kept unit spans from the
    start of the first frame of its run to the end of the last one.
    """
    _check_frames(frame_units, frame_rate)
    units, counts = torch.unique_consecutive(frame_units.cpu(), return_counts=True)
    return _timed(units, counts, frame_rate)


def no_dedup(frame_units: Int[Tensor, " frames"], frame_rate: float) -> UnitSequence:
    """Keep every frame as its own unit (same time bookkeeping as :func:`dedup_units`)."""
    _check_frames(frame_units, frame_rate)
    units = frame_units.cpu()
    return _timed(units, torch.ones_like(units), frame_rate)


def extract_units(
    extractor: UnitExtractor, wave: Float[Tensor, " samples"], *, dedup: bool = True
) -> UnitSequence:
    """Run ``extractor`` on a 16 kHz mono float waveform and time-stamp its units."""
    if not isinstance(wave, Tensor) or wave.ndim != 1 or not wave.is_floating_point():
        raise ValueError(
            "extract_units expects a 1-D float waveform at 16 kHz; use load_audio or "
            "prepare_waveform first"
        )
    if wave.numel() == 0:
        raise ValueError("extract_units got an empty waveform")
    frames = extractor.frame_units(wave)
    if frames.numel() and (int(frames.min()) < 0 or int(frames.max()) >= extractor.n_units):
        raise ValueError(
            f"extractor returned unit ids outside [0, {extractor.n_units}): "
            f"min {int(frames.min())}, max {int(frames.max())}"
        )
    make = dedup_units if dedup else no_dedup
    return make(frames, extractor.frame_rate)


def kmeans_assign(
    features: Float[Tensor, "frames dim"],
    centroids: Float[Tensor, "k dim"],
    *,
    chunk_size: int = 4096,
) -> Int[Tensor, " frames"]:
    """Index of the nearest centroid (squared Euclidean) for every frame.

    Distances are computed in float64, ``chunk_size`` frames at a time, so memory stays
    bounded at ``chunk_size * k`` values.
    """
    if features.ndim != 2 or centroids.ndim != 2:
        raise ValueError(
            f"kmeans_assign expects 2-D features and centroids, got shapes "
            f"{tuple(features.shape)} and {tuple(centroids.shape)}"
        )
    if features.shape[1] != centroids.shape[1]:
        raise ValueError(
            f"feature dim {features.shape[1]} does not match centroid dim {centroids.shape[1]}"
        )
    if centroids.shape[0] == 0:
        raise ValueError("kmeans_assign needs at least one centroid")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    c = centroids.to(device=features.device, dtype=torch.float64)
    c_sq = (c * c).sum(dim=1)
    out = torch.empty(features.shape[0], dtype=torch.long, device=features.device)
    for lo in range(0, features.shape[0], chunk_size):
        x = features[lo : lo + chunk_size].to(torch.float64)
        dist = (x * x).sum(dim=1, keepdim=True) - 2.0 * (x @ c.T) + c_sq
        out[lo : lo + chunk_size] = dist.argmin(dim=1)
    return out


def _check_frames(frame_units: Tensor, frame_rate: float) -> None:
    if not isinstance(frame_units, Tensor) or frame_units.ndim != 1:
        raise ValueError("frame units must be a 1-D tensor with one unit id per frame")
    if frame_units.is_floating_point() or frame_units.dtype == torch.bool:
        raise ValueError(f"frame units must be integer ids, got dtype {frame_units.dtype}")
    if frame_units.numel() == 0:
        raise ValueError("no frames: the unit sequence is empty (audio shorter than one frame?)")
    if not frame_rate > 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")


def _timed(units: Tensor, counts: Tensor, frame_rate: float) -> UnitSequence:
    end_frames = torch.cumsum(counts, dim=0)
    start_frames = end_frames - counts
    return UnitSequence(
        units=units.long(),
        starts=(start_frames.double() / frame_rate).float(),
        ends=(end_frames.double() / frame_rate).float(),
        frame_rate=float(frame_rate),
    )
