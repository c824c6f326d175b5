"""Audio loading and validation."""

import numpy as np
import pytest
import soundfile as sf
import torch

from speech_interp.speech import SAMPLE_RATE, AudioError, load_audio, prepare_waveform
from speech_interp.speech.audio import require_torchaudio


def tone(seconds: float = 0.5, sr: int = SAMPLE_RATE, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_mono_passthrough_is_float32():
    out = prepare_waveform(torch.from_numpy(tone()).double(), SAMPLE_RATE)
    assert out.dtype == torch.float32 and out.shape == (8000,)
    assert torch.allclose(out, torch.from_numpy(tone()))


def test_numpy_input_accepted():
    assert prepare_waveform(tone(), SAMPLE_RATE).shape == (8000,)


def test_wrong_sample_rate_is_resampled_to_16k():
    out = prepare_waveform(tone(1.0, sr=8000), 8000)
    assert out.shape == (SAMPLE_RATE,)
    out = prepare_waveform(tone(0.5, sr=44_100), 44_100)
    assert out.shape == (SAMPLE_RATE // 2,)


def test_stereo_rejected_by_default():
    stereo = np.stack([tone(), tone(freq=330.0)])
    with pytest.raises(AudioError, match=r"stereo \(2 channels\).*channel='mean'"):
        prepare_waveform(stereo, SAMPLE_RATE)


def test_multichannel_named_as_such():
    with pytest.raises(AudioError, match="multichannel"):
        prepare_waveform(np.stack([tone()] * 3), SAMPLE_RATE)


def test_stereo_mean_and_index():
    a, b = tone(), tone(freq=330.0)
    stereo = np.stack([a, b])
    mean = prepare_waveform(stereo, SAMPLE_RATE, channel="mean")
    assert torch.allclose(mean, torch.from_numpy((a + b) / 2))
    assert torch.equal(prepare_waveform(stereo, SAMPLE_RATE, channel=1), torch.from_numpy(b))
    with pytest.raises(AudioError, match="channel 2 out of range"):
        prepare_waveform(stereo, SAMPLE_RATE, channel=2)


def test_channels_last_layout():
    stereo = np.stack([tone(), tone(freq=330.0)], axis=1)  # (samples, channels)
    out = prepare_waveform(stereo, SAMPLE_RATE, channel=0, channels_last=True)
    assert torch.equal(out, torch.from_numpy(tone()))


def test_single_channel_2d_is_squeezed():
    assert prepare_waveform(tone()[None], SAMPLE_RATE).shape == (8000,)


def test_empty_rejected():
    with pytest.raises(AudioError, match="empty audio"):
        prepare_waveform(np.zeros(0, dtype=np.float32), SAMPLE_RATE)


def test_silent_rejected():
    with pytest.raises(AudioError, match="silent"):
        prepare_waveform(np.full(8000, 1e-6, dtype=np.float32), SAMPLE_RATE)


def test_nan_rejected_with_count():
    wave = tone()
    wave[[3, 10, 20]] = np.nan
    wave[30] = np.inf
    with pytest.raises(AudioError, match="4 non-finite samples"):
        prepare_waveform(wave, SAMPLE_RATE)


def test_integer_samples_rejected():
    with pytest.raises(AudioError, match="floating-point"):
        prepare_waveform(np.ones(100, dtype=np.int16), SAMPLE_RATE)


def test_bad_channel_argument():
    with pytest.raises(AudioError, match="channel must be"):
        prepare_waveform(tone(), SAMPLE_RATE, channel="left")


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_file_round_trip(tmp_path, suffix):
    path = tmp_path / f"tone{suffix}"
    sf.write(path, tone(), SAMPLE_RATE)
    out = load_audio(path)
    assert out.shape == (8000,)
    assert torch.allclose(out, torch.from_numpy(tone()), atol=1e-4)  # 16-bit quantisation


def test_file_resampled_and_stereo(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([tone(sr=22_050), tone(sr=22_050)], axis=1), 22_050)
    with pytest.raises(AudioError, match=r"stereo\.wav: audio is stereo"):
        load_audio(path)
    assert load_audio(path, channel="mean").shape == (8000,)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(AudioError, match="not found: .*nope.wav"):
        load_audio(tmp_path / "nope.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="could not read audio file .*junk.wav"):
        load_audio(junk)


def test_require_torchaudio_returns_module():
    assert hasattr(require_torchaudio().functional, "resample")


def test_require_torchaudio_explains_failure(monkeypatch):
    import importlib

    real = importlib.import_module

    def broken(name, *args):
        if name.startswith("torchaudio"):
            raise OSError("undefined symbol")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(RuntimeError, match=r"torchaudio could not load.*2\.11\.0.*pip install"):
        require_torchaudio()
