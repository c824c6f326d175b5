"""The MFCC + k-means unit extractor."""

import shutil
import subprocess

import pytest
import torch

from speech_interp.speech import MfccKMeansExtractor, MfccSettings, extract_units, load_audio


def waves(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(16_000) / 16_000
    out = []
    for freq in (150.0, 400.0, 900.0):
        chirp = torch.sin(2 * torch.pi * freq * t * (1 + t)) * 0.3
        out.append(chirp + 0.01 * torch.randn(16_000, generator=gen))
    return out


def test_frame_rate_and_frame_count():
    ex = MfccKMeansExtractor.fit(waves(), n_units=6, seed=0)
    assert ex.frame_rate == 25.0 and ex.n_units == 6
    assert ex.features(torch.randn(16_000)).shape == (25, 39)
    assert ex.features(torch.randn(16_000 + 639)).shape == (25, 39)
    units = ex.frame_units(waves()[0])
    assert units.shape == (25,) and units.dtype == torch.long
    assert 0 <= int(units.min()) and int(units.max()) < 6


def test_normalisation_option():
    ex = MfccKMeansExtractor(torch.zeros(2, 39))
    feats = ex.features(waves()[1])
    assert torch.allclose(feats.mean(dim=0), torch.zeros(39), atol=1e-4)
    raw = MfccKMeansExtractor(torch.zeros(2, 39), MfccSettings(normalize=False)).features(
        waves()[1]
    )
    assert not torch.allclose(raw.mean(dim=0), torch.zeros(39), atol=1e-2)


def test_same_seed_same_centroids():
    a = MfccKMeansExtractor.fit(waves(), n_units=5, seed=3)
    b = MfccKMeansExtractor.fit(waves(), n_units=5, seed=3)
    assert torch.equal(a.centroids, b.centroids)


def test_save_load_round_trip(tmp_path):
    settings = MfccSettings(n_mfcc=10, n_mels=30)
    ex = MfccKMeansExtractor.fit(waves(), n_units=5, seed=1, settings=settings)
    path = tmp_path / "km.safetensors"
    ex.save(path)
    back = MfccKMeansExtractor.load(path)
    assert back.settings == settings
    assert torch.equal(back.centroids, ex.centroids)
    for w in waves(seed=7):
        assert torch.equal(back.frame_units(w), ex.frame_units(w))


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="cannot fit 100 units on only 25 frames"):
        MfccKMeansExtractor.fit(waves()[:1], n_units=100, seed=0)
    with pytest.raises(ValueError, match=r"shape \(k, 39\)"):
        MfccKMeansExtractor(torch.zeros(3, 13))
    with pytest.raises(ValueError, match="audio too short: 100 samples"):
        MfccKMeansExtractor(torch.zeros(2, 39)).features(torch.randn(100))
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        MfccKMeansExtractor.load(tmp_path / "missing.safetensors")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")
def test_espeak_word_end_to_end(tmp_path):
    path = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "hello"], check=True, capture_output=True)
    wave = load_audio(path)  # espeak-ng writes 22.05 kHz; load_audio resamples
    assert wave.dtype == torch.float32 and wave.ndim == 1
    ex = MfccKMeansExtractor.fit([wave], n_units=4, seed=0)
    units = ex.frame_units(wave)
    assert units.shape == (wave.shape[0] // 640,)
    assert len(set(units.tolist())) > 1
    seq = extract_units(ex, wave)
    assert float(seq.ends[-1]) == pytest.approx(len(units) / 25.0)
