"""A light-weight unit extractor: MFCC + deltas + delta-deltas, quantised with k-means."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float, Int
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .audio import SAMPLE_RATE, check_frames, require_torchaudio
from .units import kmeans_assign

_FORMAT = "speech_interp.mfcc_kmeans"
_VERSION = 1


@dataclass(frozen=True)
class MfccSettings:
    """Feature settings; the defaults give 25 Hz frames (40 ms hop) with an 80 ms window."""

    n_mfcc: int = 13
    n_mels: int = 40
    hop_length: int = 640
    win_length: int = 1280
    delta_win: int = 5
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.win_length < self.hop_length or (self.win_length - self.hop_length) % 2:
            raise ValueError(
                f"win_length ({self.win_length}) must be >= hop_length ({self.hop_length}) "
                "and differ from it by an even number of samples"
            )
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must not exceed n_mels ({self.n_mels})")

    @property
    def dim(self) -> int:
        """Feature dimension: MFCCs plus their deltas and delta-deltas."""
        return 3 * self.n_mfcc


class MfccKMeansExtractor:
    """Units from nearest k-means centroid of per-frame MFCC(+Δ+ΔΔ) features.

    Frame ``i`` is centred on sample ``(i + 0.5) * hop_length`` (the signal is zero-padded
    by ``(win_length - hop_length) / 2`` on each side), so a waveform of ``n`` samples gives
    ``n // hop_length`` frames and frame ``i`` lines up with ``[i, i + 1) / frame_rate``.
    """

    def __init__(self, centroids: Float[Tensor, "k dim"], settings: MfccSettings | None = None):
        self.settings = settings or MfccSettings()
        if centroids.ndim != 2 or centroids.shape[1] != self.settings.dim:
            raise ValueError(
                f"centroids must have shape (k, {self.settings.dim}) for n_mfcc="
                f"{self.settings.n_mfcc}, got {tuple(centroids.shape)}"
            )
        self.centroids = centroids.detach().to(torch.float32).cpu()
        self._mfcc = None

    @property
    def n_units(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.settings.hop_length

    def features(self, wave: Float[Tensor, " samples"]) -> Float[Tensor, "frames dim"]:
        """MFCC, delta and delta-delta features, one row per frame."""
        s = self.settings
        check_frames(wave, s.hop_length)
        pad = (s.win_length - s.hop_length) // 2
        padded = F.pad(wave.to(torch.float32).cpu(), (pad, pad))
        mfcc = self._transform()(padded)  # (n_mfcc, frames)
        functional = require_torchaudio().functional
        delta = functional.compute_deltas(mfcc, win_length=s.delta_win)
        delta2 = functional.compute_deltas(delta, win_length=s.delta_win)
        feats = rearrange(torch.cat([mfcc, delta, delta2]), "dim frames -> frames dim")
        if s.normalize:
            mean = feats.mean(dim=0, keepdim=True)
            std = feats.std(dim=0, unbiased=False, keepdim=True)
            feats = (feats - mean) / (std + 1e-5)
        return feats

    def frame_units(self, wave: Float[Tensor, " samples"]) -> Int[Tensor, " frames"]:
        """Nearest-centroid unit id for every frame."""
        return kmeans_assign(self.features(wave), self.centroids)

    @classmethod
    def fit(
        cls,
        waves: list[Tensor],
        n_units: int,
        seed: int,
        *,
        settings: MfccSettings | None = None,
        n_init: int = 10,
    ) -> MfccKMeansExtractor:
        """Fit k-means (sklearn, ``random_state=seed``) on the frames of all ``waves``."""
        from sklearn.cluster import KMeans

        if not waves:
            raise ValueError("fit needs at least one waveform")
        proto = cls(torch.zeros(1, (settings or MfccSettings()).dim), settings)
        feats = torch.cat([proto.features(w) for w in waves])
        if feats.shape[0] < n_units:
            raise ValueError(
                f"cannot fit {n_units} units on only {feats.shape[0]} frames; "
                "use more audio or fewer units"
            )
        km = KMeans(n_clusters=n_units, n_init=n_init, random_state=seed)
        km.fit(feats.double().numpy())
        return cls(torch.from_numpy(km.cluster_centers_).float(), proto.settings)

    def save(self, path: str | Path) -> None:
        """Write centroids and feature settings to a safetensors file."""
        meta = {"format": _FORMAT, "version": _VERSION, "settings": asdict(self.settings)}
        save_file(
            {"centroids": self.centroids.contiguous()},
            str(path),
            metadata={"speech_interp": json.dumps(meta)},
        )

    @classmethod
    def load(cls, path: str | Path) -> MfccKMeansExtractor:
        """Read an extractor written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"MFCC k-means file not found: {path}")
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("speech_interp")
            if raw is None or "centroids" not in f.keys():
                raise ValueError(f"{path} is not an MfccKMeansExtractor file (missing metadata)")
            centroids = f.get_tensor("centroids")
        meta = json.loads(raw)
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise ValueError(
                f"{path}: unsupported format {meta.get('format')!r} version {meta.get('version')!r}"
            )
        return cls(centroids, MfccSettings(**meta["settings"]))

    def _transform(self):
        if self._mfcc is None:
            s = self.settings
            self._mfcc = require_torchaudio().transforms.MFCC(
                sample_rate=SAMPLE_RATE,
                n_mfcc=s.n_mfcc,
                melkwargs={
                    "n_fft": s.win_length,
                    "win_length": s.win_length,
                    "hop_length": s.hop_length,
                    "n_mels": s.n_mels,
                    "center": False,
                },
            )
        return self._mfcc
