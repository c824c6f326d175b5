"""The resumable checkpoint of a patching sweep.

**Resume.** With ``out_dir``, every finished batch is appended to ``patch_cells.log`` there
(``patch_checkpoint.json`` records what the sweep was run with); a rerun skips finished batches
and the returned table is the same as an uninterrupted run's, bit for bit. The log holds one
cell per line, ``<crc32 of the JSON, 8 hex digits> <JSON record>``, written with one ``write``
per batch, flushed and fsynced: a run killed at any byte leaves at most one last line without
its newline or with a checksum that fails; reading stops there, and the file is cut back to the
last good line before anything is appended (so a partial line is never continued). JSON floats
round-trip exactly, so resumed values are the original ones.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import pandas as pd

from speech_interp.artifacts import write_text
from speech_interp.causal.tables import EXTRA_COLUMNS, PATCH_COLUMNS

KEY = ["pair", "metric", "component", "layer", "position"]
CHECKPOINT, CHECKPOINT_META = "patch_cells.log", "patch_checkpoint.json"


def checkpoint_batch_size(out_dir: Path) -> int | None:
    """The batch size of the sweep checkpointed in ``out_dir`` (None: no checkpoint)."""
    meta = out_dir / CHECKPOINT_META
    if not (meta.exists() and (out_dir / CHECKPOINT).exists()):
        return None
    return json.loads(meta.read_text()).get("batch_size")


class Checkpoint:
    """Append-only, checksummed log of finished cells plus the sweep settings it belongs to
    (format and crash rule in the module docstring)."""

    COLUMNS = PATCH_COLUMNS + EXTRA_COLUMNS

    def __init__(self, out_dir: str | Path, meta: dict):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path, meta_path = self.dir / CHECKPOINT, self.dir / CHECKPOINT_META
        if meta_path.exists() and self.path.exists():
            old = json.loads(meta_path.read_text())
            if old != meta:
                diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
                raise ValueError(
                    f"{self.path} holds cells of a different sweep (differs in {diff}); "
                    "use another output directory or delete the checkpoint to start over"
                )
        else:
            self.path.unlink(missing_ok=True)
            write_text(meta_path, json.dumps(meta, indent=2) + "\n")
        self.done = self._read()

    @staticmethod
    def _line(record: dict) -> bytes:
        body = json.dumps(record, separators=(",", ":")).encode()
        return b"%08x %s\n" % (zlib.crc32(body), body)

    def _read(self) -> pd.DataFrame:
        """Every intact record; the file is cut back to the end of the last one."""
        records, good = [], 0
        data = self.path.read_bytes() if self.path.exists() else b""
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
                break
            body = line[9:-1]
            if line[:8] != b"%08x" % zlib.crc32(body):
                break
            records.append(json.loads(body))
            good += len(line)
        if good < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        frame = pd.DataFrame(records, columns=self.COLUMNS)
        return frame.drop_duplicates(subset=KEY, keep="last")

    def keys(self) -> set:
        d = self.done
        cols = [d[c] for c in ("pair", "metric", "component")]
        cols += [d["layer"].astype(int), d["position"].astype(int)]
        return set(zip(*cols, strict=True))

    def append(self, rows: pd.DataFrame) -> None:
        """Append a finished batch: one write, flushed and fsynced."""
        records = rows[self.COLUMNS].to_dict(orient="records")
        blob = b"".join(self._line(_plain(r)) for r in records)
        with self.path.open("ab") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())


def _plain(record: dict) -> dict:
    """numpy scalars as Python numbers (exact: float64 -> float)."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}


__all__ = ["CHECKPOINT", "CHECKPOINT_META", "KEY", "Checkpoint", "checkpoint_batch_size"]
