"""The patching checkpoint survives crashes: a log cut at every byte of its last record reads
back as the records before it, a resumed sweep equals an uninterrupted one bit for bit, and so
does a real sweep process killed with SIGKILL several times."""

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from speech_interp.causal import patch_sweep
from speech_interp.causal.checkpoint import CHECKPOINT, CHECKPOINT_META, Checkpoint
from speech_interp.data import make_pairs
from speech_interp.testing import causal_utterances

pytestmark = pytest.mark.integration
KW = dict(batch_size=4, progress=False, metrics=["speech"])


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(causal_utterances(), seed=1, max_pairs=3)


@pytest.fixture(scope="module")
def finished(models, pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return out, patch_sweep(models["tl"], models["layout"], pairs, out_dir=out, **KW).table


def test_cut_at_every_byte_of_the_last_record(models, pairs, finished, tmp_path):
    out, full = finished
    log = (out / CHECKPOINT).read_bytes()
    lines = log.splitlines(keepends=True)
    start = len(log) - len(lines[-1])
    meta = __import__("json").loads((out / CHECKPOINT_META).read_text())
    cut_dir = tmp_path / "cut"
    cut_dir.mkdir()
    shutil.copy(out / CHECKPOINT_META, cut_dir / CHECKPOINT_META)
    for offset in range(start, len(log)):
        (cut_dir / CHECKPOINT).write_bytes(log[:offset])
        ckpt = Checkpoint(cut_dir, meta)
        assert len(ckpt.done) == len(lines) - 1, offset
        assert (cut_dir / CHECKPOINT).read_bytes() == log[:start]  # cut back to the good end
    for offset in random.Random(0).sample(range(start, len(log)), 3):  # and resume from there
        (cut_dir / CHECKPOINT).write_bytes(log[:offset])
        resumed = patch_sweep(models["tl"], models["layout"], pairs, out_dir=cut_dir, **KW)
        pd.testing.assert_frame_equal(resumed.table, full, check_exact=True)
        assert len(Checkpoint(cut_dir, meta).done) == len(full)  # every cell logged once more


def test_sigkill_and_resume_is_bit_identical(tiny_model_dirs, finished, tmp_path):
    _, full = finished
    out, result = tmp_path / "killed", tmp_path / "table.pkl"
    script = textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        import speech_interp as si
        from speech_interp.causal import patch_sweep
        from speech_interp.data import make_pairs
        from speech_interp.testing import causal_utterances
        model, layout = si.load({tiny_model_dirs("sims-qwen2")!r}, backend="tl")
        pairs = make_pairs(causal_utterances(), seed=1, max_pairs=3)
        res = patch_sweep(model, layout, pairs, out_dir={str(out)!r}, **{KW!r})
        res.table.to_pickle({str(result)!r})
    """)
    n_lines = len(full)
    rng = random.Random(0)
    kills = 0
    for _ in range(4):  # kill the sweep at a random point of its progress, then rerun
        target = rng.randrange(1, n_lines)
        proc = subprocess.Popen([sys.executable, "-c", script])
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            log = out / CHECKPOINT
            if log.exists() and log.read_bytes().count(b"\n") >= target:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        proc.wait()
    print(f"SIGKILLs landed mid-sweep: {kills} of 4, cells: {n_lines}")
    assert kills >= 2  # at least some kills landed mid-sweep
    subprocess.run([sys.executable, "-c", script], check=True)
    pd.testing.assert_frame_equal(pd.read_pickle(result), full, check_exact=True)
