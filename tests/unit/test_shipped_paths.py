"""The user cache: one rule for every artefact that is built or downloaded (materialised rows
checkpoints, fact-set units, k-means files)."""

from pathlib import Path

import pytest

from speech_interp.shipped import user_cache


@pytest.mark.parametrize("value", [None, ""])
def test_unset_or_empty_cache_is_the_home_cache(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("SPEECH_INTERP_CACHE", raising=False)
    else:
        monkeypatch.setenv("SPEECH_INTERP_CACHE", value)
    assert user_cache() == Path.home() / ".cache" / "speech_interp"


def test_cache_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPEECH_INTERP_CACHE", str(tmp_path))
    assert user_cache() == tmp_path
    monkeypatch.setenv("SPEECH_INTERP_CACHE", "~/elsewhere")
    assert user_cache() == Path.home() / "elsewhere"
