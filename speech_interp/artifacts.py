"""The files every command writes beside its tables, each in one format and by one writer.

- ``run.json`` (:func:`write_run_json`): model id, sha256 of each weights file, seed, package
  versions, Python and platform, the data file and its sha256 when there is one, plus any
  command-specific ``extra`` fields.
- ``phases.json`` (:func:`write_phases`): ``{"bands": [...], "rule": ...}``, the phase bands of
  :func:`speech_interp.lens.phase_bands` (one record per model, lens and phase) and their rule.
- ``verdict.json`` (:func:`write_verdicts`): ``{model_id: verdicts}`` with one entry per model
  (the demo's variants, or the one model of ``speech-interp ablate``), each the content of
  :func:`speech_interp.causal.verdict.verdicts`; NaN is written as null.

**Crash safety**: every output file is written through :func:`atomic_path`: to a temporary file
in the same directory, flushed, fsynced and renamed over the target, so a killed run leaves
either the old file or the complete new one, never a half-written file that looks valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as md
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

PACKAGES = ("torch", "transformers", "transformer-lens", "nnsight", "speech-interp")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(weights_dir: str | Path) -> dict[str, str]:
    """sha256 of every weights file under ``weights_dir`` (relative path -> hex digest)."""
    root = Path(weights_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"weights directory not found: {root}")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES and not p.name.startswith(".")
    )
    return {str(p.relative_to(root)): sha256_file(p) for p in files}


def package_versions(packages=PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for pkg in packages:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return versions


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; fsynced and renamed onto ``path`` on exit
    (removed on error, leaving ``path`` as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """A temporary directory beside ``out`` to write into, renamed to ``out`` on exit (removed on
    error): a killed run leaves no half-written directory. ``out`` must be absent or empty."""
    import shutil

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep the result private
        yield tmp
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame as CSV (no index) atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def write_run_json(
    out_dir: str | Path,
    model_id: str,
    seed: int,
    *,
    weights_dir: str | Path | None,
    data: str | Path | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``out_dir/run.json``. ``weights_dir``: the model's local weights directory, from
    :func:`speech_interp.models.weights_dir_of`; None (not available locally) is recorded, not
    hidden."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info: dict = {"model_id": model_id, "weights_dir": None, "weights_sha256": None}
    if weights_dir is not None and Path(weights_dir).is_dir():
        info["weights_dir"] = str(weights_dir)
        info["weights_sha256"] = weights_sha256(weights_dir)
        if not info["weights_sha256"]:
            info["weights_note"] = f"no weights files ({', '.join(WEIGHT_SUFFIXES)}) found"
    else:
        info["weights_note"] = f"weights directory not available locally: {weights_dir}"
    info.update(
        seed=seed,
        packages=package_versions(),
        python=sys.version.split()[0],
        platform=platform.platform(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if data is not None:
        info.update(data=str(data), data_sha256=sha256_file(data))
    info.update(extra or {})
    return write_text(out / "run.json", json.dumps(info, indent=2, default=str) + "\n")


def write_phases(out_dir: str | Path, bands: pd.DataFrame, rule: str) -> Path:
    """Write ``out_dir/phases.json`` from :func:`speech_interp.lens.phase_bands`' frame and the
    rule that made it (:data:`speech_interp.lens.phases.PHASE_RULE`)."""
    records = json.loads(bands.to_json(orient="records"))
    content = {"bands": records, "rule": rule}
    return write_text(Path(out_dir) / "phases.json", json.dumps(content, indent=2) + "\n")


def write_verdicts(out_dir: str | Path, by_model: dict[str, dict]) -> Path:
    """Write ``out_dir/verdict.json``: ``{model_id: verdicts(...)}`` (NaN written as null)."""
    if not by_model or not all(isinstance(v, dict) and "bands" in v for v in by_model.values()):
        raise ValueError("verdict.json maps each model id to the content of verdicts(...)")
    text = json.dumps(_json_safe(by_model), indent=2) + "\n"
    return write_text(Path(out_dir) / "verdict.json", text)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


__all__ = [
    "atomic_path",
    "package_versions",
    "sha256_file",
    "weights_sha256",
    "write_csv",
    "write_phases",
    "write_run_json",
    "write_text",
    "write_verdicts",
]
