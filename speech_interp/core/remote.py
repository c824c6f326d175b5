"""Checks before a trace is sent to NDIF (``remote=True``), so failures name their cause.

A checked remote mode also registers :mod:`speech_interp.core.trace_ops` (the only code of this
package inside traces) to travel by value with each request.

``remote`` takes three values on the nnsight backend: ``False`` (run here), ``"local"`` (nnsight's
simulation of the server: the trace is serialized and run with this package's modules hidden, so
it proves the trace holds only plain torch) and ``True`` (NDIF). :func:`check_remote` runs once
per process and host before the first remote trace:

1. ``NDIF_API_KEY`` must be set (the environment wins over nnsight's config file);
2. the host (``NDIF_HOST``, else nnsight's default) must answer its ``/env`` endpoint, which lists
   the server's installed packages (nnsight 0.8 ``nnsight.ndif.get_remote_env``);
3. the server's nnsight must have the client's major.minor version. A server whose ``/env``
   does not list nnsight is let through (the server gates clients by the ``nnsight-version``
   header it receives with each request).
"""

from __future__ import annotations

import importlib.metadata as md
import os

_CHECKED: set[str] = set()


class RemoteError(RuntimeError):
    """Remote (NDIF) execution cannot start; the message names the cause and the fix."""


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def resolve_remote(remote: bool | str, backend: str) -> bool | str:
    """Validate ``remote`` for ``backend`` and run :func:`check_remote` for ``remote=True``."""
    if remote not in (False, True, "local"):
        raise ValueError(f"remote must be False, True or 'local', got {remote!r}")
    if remote and backend != "nnsight":
        raise ValueError(
            f"remote={remote!r} needs the nnsight backend (TransformerLens runs locally only)"
        )
    if remote is True:
        check_remote()
    if remote:
        from speech_interp.core.trace_ops import ship_with_remote_traces

        ship_with_remote_traces()
    return remote


def check_remote(*, force: bool = False) -> str:
    """Check key, host and nnsight version (rules in the module docstring); returns the host."""
    from nnsight import CONFIG, ndif

    key = os.environ.get("NDIF_API_KEY")
    if not key:
        raise RemoteError(
            "remote=True needs an NDIF API key: set the NDIF_API_KEY environment variable "
            "(or simulate the server on this machine: remote='local', CLI --remote local)"
        )
    host = os.environ.get("NDIF_HOST") or CONFIG.API.HOST
    # nnsight reads the environment once at import; keep its config in step with ours.
    CONFIG.API.APIKEY, CONFIG.API.HOST = key, host
    if host in _CHECKED and not force:
        return host
    try:
        env = ndif.get_remote_env(force_refresh=True)
    except Exception as err:  # connection refused, DNS, TLS, HTTP errors
        raise RemoteError(
            f"NDIF host {host} is unreachable ({type(err).__name__}: {err}); check NDIF_HOST "
            "and the network, or simulate the server: remote='local' (CLI --remote local)"
        ) from None
    server = (env.get("packages") or {}).get("nnsight") if isinstance(env, dict) else None
    client = md.version("nnsight")
    if server is not None and _major_minor(str(server)) != _major_minor(client):
        raise RemoteError(
            f"NDIF host {host} runs nnsight {server} but this client has nnsight {client}; "
            f"install nnsight=={server} to trace remotely"
        )
    _CHECKED.add(host)
    return host


__all__ = ["RemoteError", "check_remote", "resolve_remote"]
