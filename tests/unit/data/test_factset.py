"""The fact-set reader maps the published layouts by name and names what it cannot map."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from speech_interp.data.factset import FactSetError, read_factset


def _audio(seconds: float, rate: int = 16000, name: str = "a.wav") -> dict:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV")
    return {"bytes": buf.getvalue(), "path": name}


def _timings(words):  # sTinyStories' struct order: end_time, start_time, word
    return [
        {"end_time": 0.3 * i + 0.25, "start_time": 0.3 * i, "word": w} for i, w in enumerate(words)
    ]


def _timed_row(i=0, prompt="the cow lives in the", **over):
    row = {
        "id": f"f{i}",
        "category": "home",
        "prompt_text": prompt,
        "correct": "barn",
        "counterfactual": "harbor",
    }
    for voice in ("audio_a", "audio_b"):
        row[voice] = _audio(1.6, 22050 if voice == "audio_b" else 16000)
        row[f"{voice}_aligned_text"] = _timings(prompt.split())
    row.update(over)
    return row


def test_timed_layout_maps_fields_by_name(tmp_path):
    path = tmp_path / "set.parquet"
    pd.DataFrame([_timed_row(0), _timed_row(1, "a dog lives in the")]).to_parquet(path)
    items = read_factset(path)
    assert [i.id for i in items] == ["f0", "f1"]
    first = items[0]
    assert (first.category, first.correct, first.counterfactual) == ("home", "barn", "harbor")
    assert [r.name for r in first.renderings] == ["audio_a", "audio_b"]
    words = first.renderings[0].words
    assert [w.word for w in words] == "the cow lives in the".split()
    assert (words[1].start, words[1].end) == (0.3, 0.55)  # read by name, not by struct order
    # the 22.05 kHz rendering is resampled to 16 kHz
    assert abs(first.renderings[1].wave.numel() - 1.6 * 16000) <= 2
    assert first.completion_audio == {}


def test_directory_of_parquet_files(tmp_path):
    (tmp_path / "data").mkdir()
    pd.DataFrame([_timed_row(0)]).to_parquet(tmp_path / "data" / "train-00000-of-00001.parquet")
    assert len(read_factset(tmp_path)) == 1


def test_swag_layout_gives_completion_audio(tmp_path):
    row = {
        "category": "home",
        "prompt_text": "the cow lives in the",
        "chosen_text": "barn",
        "rejected_text": "harbor",
        "prompt": _audio(1.6),
        "chosen": _audio(0.4),
        "rejected": _audio(0.5),
        "aligned_text": _timings("the cow lives in the".split()),
    }
    path = tmp_path / "swag.parquet"
    pd.DataFrame([row]).to_parquet(path)
    (item,) = read_factset(path)
    assert item.id == "fact-0000" and (item.correct, item.counterfactual) == ("barn", "harbor")
    assert [r.name for r in item.renderings] == ["prompt"]
    assert set(item.completion_audio) == {"correct", "counterfactual"}
    assert item.completion_audio["counterfactual"].numel() == 8000


def test_missing_fields_name_the_columns_found(tmp_path):
    row = _timed_row()
    del row["counterfactual"]
    path = tmp_path / "bad.parquet"
    pd.DataFrame([row]).to_parquet(path)
    with pytest.raises(FactSetError, match="no column for counterfactual; columns found: id"):
        read_factset(path)


def test_timed_words_must_match_the_prompt(tmp_path):
    row = _timed_row(audio_b_aligned_text=_timings("the goat lives in the".split()))
    path = tmp_path / "mismatch.parquet"
    pd.DataFrame([row]).to_parquet(path)
    with pytest.raises(FactSetError, match=r"row 0: the timed words of 'audio_b'"):
        read_factset(path)
    (item,) = read_factset(path, strict=False)
    assert item.renderings[1].words[1].word == "goat"


def test_bad_timing_and_audio_are_named(tmp_path):
    bad_time = _timed_row(audio_a_aligned_text=[{"start_time": 0.0, "word": "the"}])
    path = tmp_path / "t.parquet"
    pd.DataFrame([bad_time]).to_parquet(path)
    with pytest.raises(FactSetError, match="audio_a_aligned_text.*no end time"):
        read_factset(path, strict=False)
    broken = _timed_row(audio_a={"bytes": b"not audio", "path": "x.wav"})
    pd.DataFrame([broken]).to_parquet(path)
    with pytest.raises(FactSetError, match="row 0 'audio_a': cannot decode the audio"):
        read_factset(path)
    with pytest.raises(FactSetError, match="fact set not found"):
        read_factset(tmp_path / "nope.parquet")


def test_decoded_audio_with_either_rate_key(tmp_path):
    """Decoded audio: {array, sampling_rate} (datasets) or {array, sample_rate} (some sets)."""
    tone = (0.3 * np.sin(np.arange(8000) / 10)).astype(np.float32)
    rows = [_timed_row(0, audio_a={"array": tone, "sampling_rate": 8000}),
            _timed_row(1, audio_a={"array": tone, "sample_rate": 16000})]  # fmt: skip
    path = tmp_path / "decoded.parquet"
    pd.DataFrame(rows).to_parquet(path)
    a, b = read_factset(path)
    assert a.renderings[0].wave.numel() == 16000 and b.renderings[0].wave.numel() == 8000
