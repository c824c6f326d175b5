"""Checks before a trace goes to NDIF: key, host, version, backend; no server needed."""

import pytest

from speech_interp.core.remote import RemoteError, check_remote, resolve_remote


@pytest.fixture
def ndif_config(monkeypatch):
    """Restore nnsight's config and the checked-host cache after a test."""
    from nnsight import CONFIG

    import speech_interp.core.remote as remote

    monkeypatch.setattr(CONFIG.API, "HOST", CONFIG.API.HOST)
    monkeypatch.setattr(CONFIG.API, "APIKEY", CONFIG.API.APIKEY)
    monkeypatch.setattr(remote, "_CHECKED", set())
    return monkeypatch


def test_remote_true_needs_the_key(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(RemoteError, match="NDIF_API_KEY"):
        resolve_remote(True, "nnsight")
    with pytest.raises(ValueError, match="needs the nnsight backend"):
        resolve_remote("local", "tl")
    with pytest.raises(ValueError, match="remote must be"):
        resolve_remote("yes", "nnsight")
    assert resolve_remote("local", "nnsight") == "local"


def test_remote_unreachable_host(ndif_config):
    monkeypatch = ndif_config
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setenv("NDIF_HOST", "http://127.0.0.1:9")  # discard port: refused at once
    with pytest.raises(RemoteError, match=r"NDIF host http://127.0.0.1:9 is unreachable"):
        check_remote(force=True)


def test_remote_version_mismatch(ndif_config):
    monkeypatch = ndif_config
    from nnsight import ndif

    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setenv("NDIF_HOST", "http://ndif.invalid")
    monkeypatch.setattr(ndif, "get_remote_env", lambda **kw: {"packages": {"nnsight": "0.1.0"}})
    with pytest.raises(RemoteError, match="runs nnsight 0.1.0 but this client has nnsight"):
        check_remote(force=True)
    import importlib.metadata as md

    same = md.version("nnsight")
    monkeypatch.setattr(ndif, "get_remote_env", lambda **kw: {"packages": {"nnsight": same}})
    assert check_remote(force=True) == "http://ndif.invalid"
