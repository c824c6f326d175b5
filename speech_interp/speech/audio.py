"""Audio loading and validation: every waveform leaves here as float32 mono 16 kHz."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np
import soundfile as sf
import torch
from jaxtyping import Float
from torch import Tensor

SAMPLE_RATE = 16_000
SILENCE_PEAK = 1e-4

_KNOWN_GOOD = "torch 2.11.0 + torchaudio 2.11.0; torch 2.9.1 + torchaudio 2.9.x"


class AudioError(ValueError):
    """The audio cannot be used as given (empty, silent, non-finite, multichannel, unreadable)."""


def require_torchaudio() -> ModuleType:
    """Import torchaudio (and ``torchaudio.functional``) or explain the version mismatch."""
    try:
        torchaudio = importlib.import_module("torchaudio")
        importlib.import_module("torchaudio.functional")
    except (ImportError, OSError) as exc:
        base = torch.__version__.split("+")[0]
        raise RuntimeError(
            f"torchaudio could not load next to torch {torch.__version__} ({exc}). "
            f"torchaudio must match torch exactly; known-good pairs: {_KNOWN_GOOD}. "
            f'Fix with: pip install "torchaudio=={base}" (from the same index/CUDA build as torch).'
        ) from exc
    return torchaudio


def load_audio(path: str | Path, *, channel: str | int = "error") -> Float[Tensor, " samples"]:
    """Read any file soundfile understands and return it through :func:`prepare_waveform`."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several unrelated types for bad files
        raise AudioError(f"could not read audio file {path}: {exc}") from exc
    try:
        return prepare_waveform(data, sample_rate, channel=channel, channels_last=True)
    except AudioError as exc:
        raise AudioError(f"{path}: {exc}") from exc


def prepare_waveform(
    wave: Tensor | np.ndarray,
    sample_rate: int,
    *,
    channel: str | int = "error",
    channels_last: bool = False,
) -> Float[Tensor, " samples"]:
    """Validate a waveform and return it as float32 mono at :data:`SAMPLE_RATE`.

    ``wave`` is ``(samples,)`` or ``(channels, samples)``; with ``channels_last=True`` a 2-D
    input is ``(samples, channels)`` (soundfile's layout). Multichannel audio is rejected
    unless ``channel`` is ``"mean"`` (average the channels) or an int (pick one channel).
    Other sample rates are resampled; empty, non-finite and silent audio raise AudioError.
    """
    wave = torch.as_tensor(wave)
    if not wave.is_floating_point():
        raise AudioError(
            f"expected floating-point samples in [-1, 1], got dtype {wave.dtype}; "
            "convert integer PCM to float first"
        )
    if wave.ndim == 1:
        wave = wave.unsqueeze(0)
    elif wave.ndim == 2:
        if channels_last:
            wave = wave.T
    else:
        raise AudioError(
            f"expected audio of shape (samples,) or (channels, samples), got {tuple(wave.shape)}"
        )
    if wave.numel() == 0:
        raise AudioError(f"empty audio: shape {tuple(wave.shape)} has no samples")
    n_bad = int((~torch.isfinite(wave)).sum())
    if n_bad:
        raise AudioError(
            f"audio contains {n_bad} non-finite samples (NaN or inf) out of {wave.numel()}"
        )
    mono = _select_channel(wave, channel)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise AudioError(f"sample_rate must be an int, got {sample_rate!r}")
    if sample_rate <= 0:
        raise AudioError(f"sample_rate must be positive, got {sample_rate}")
    mono = mono.to(torch.float32)
    if sample_rate != SAMPLE_RATE:
        functional = require_torchaudio().functional
        mono = functional.resample(mono, orig_freq=int(sample_rate), new_freq=SAMPLE_RATE)
    peak = float(mono.abs().max())
    if peak < SILENCE_PEAK:
        raise AudioError(f"silent audio: peak amplitude {peak:.2e} is below {SILENCE_PEAK:.0e}")
    return mono.contiguous()


def check_frames(wave: Float[Tensor, " samples"], hop: int) -> None:
    """A feature extractor's input check: a mono waveform of at least one ``hop`` of samples."""
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (samples,), got {tuple(wave.shape)}")
    if wave.shape[0] < hop:
        raise ValueError(
            f"audio too short: {wave.shape[0]} samples gives no frames; need at least "
            f"{hop} samples ({hop / SAMPLE_RATE * 1000:.0f} ms)"
        )


def _select_channel(wave: Float[Tensor, "channels samples"], channel: str | int) -> Tensor:
    """Reduce ``(channels, samples)`` to ``(samples,)`` according to ``channel``."""
    n_channels = wave.shape[0]
    if isinstance(channel, bool) or not isinstance(channel, (str, int)):
        raise AudioError(f'channel must be "error", "mean" or an int, got {channel!r}')
    if isinstance(channel, str) and channel not in ("error", "mean"):
        raise AudioError(f'channel must be "error", "mean" or an int, got {channel!r}')
    if isinstance(channel, int):
        if not -n_channels <= channel < n_channels:
            raise AudioError(
                f"channel {channel} out of range for audio with {n_channels} channel(s)"
            )
        return wave[channel]
    if n_channels == 1:
        return wave[0]
    if channel == "mean":
        return wave.mean(dim=0)
    kind = "stereo" if n_channels == 2 else "multichannel"
    raise AudioError(
        f"audio is {kind} ({n_channels} channels); pass channel='mean' to average the channels "
        "or channel=<int> to pick one"
    )
