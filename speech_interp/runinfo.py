"""``run.json``: what every output directory records about the run that wrote it.

Model id, sha256 of each weights file, seed, package versions, Python and platform, plus any
command-specific ``extra`` fields.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

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


def write_run_json(
    out_dir: str | Path,
    model_id: str,
    weights_dir: str | Path | None,
    seed: int,
    extra: dict | None = None,
) -> Path:
    """Write ``out_dir/run.json``; a missing weights directory is recorded, not hidden."""
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
    info.update(extra or {})
    path = out / "run.json"
    path.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return path


__all__ = ["package_versions", "sha256_file", "weights_sha256", "write_run_json"]
