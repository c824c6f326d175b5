"""Exact and attribution patching on a tiny random model: known answers, backends agree,
nnsight's remote simulation runs, a sweep resumes after an interruption, bad input fails."""

import pandas as pd
import pytest
import torch

import speech_interp.causal.patching as patching
from speech_interp.causal import PATCH_COLUMNS
from speech_interp.causal.attribution import attribute_task, attribution_sweep, rank_agreement
from speech_interp.causal.patching import clean_run, patch_sweep, patched_metric
from speech_interp.causal.tasks import build_tasks, task_grid
from speech_interp.core.edits import COMPONENTS, Edit, capture, run_edited
from speech_interp.core.remote import RemoteError
from speech_interp.data.pairs import Pair, make_pairs
from speech_interp.testing import causal_utterances

from tolerance import TINY_READOUT_OPS, assert_close_float, float_bound

pytestmark = pytest.mark.integration


def close(actual, expected):
    """Equal up to float32 rounding of a log-probability read-out (metrics of size 7-20); the
    bound, ~6e-4 at 20, stays below every clean-corrupt gap here (>= 8e-4 at 6.7, ~2e-4 bound)."""
    assert_close_float(actual, expected, ops=TINY_READOUT_OPS)


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(causal_utterances(), seed=0, max_pairs=4)


@pytest.fixture(scope="module")
def tl_sweep(models, pairs):
    return patch_sweep(models["tl"], models["layout"], pairs, batch_size=16, progress=False)


def _tasks(models, pairs):
    tasks, _ = build_tasks(pairs, models["layout"], models["tl"].tokenizer)
    return tasks


def test_sweep_table_shape(tl_sweep, pairs):
    t = tl_sweep.table
    assert list(t.columns[: len(PATCH_COLUMNS)]) == PATCH_COLUMNS
    assert set(t.component) == set(COMPONENTS) and set(t.layer) == {0, 1}
    assert set(t.metric) == {"speech", "text"} and (t.method == "exact").all()
    assert 0 not in set(t.position)
    assert t.pair.nunique() == len(pairs)
    # layer-0 resid_pre after the word is the same token in both runs: nothing to recover
    after0 = t[(t.component == "resid_pre") & (t.layer == 0) & (t.position > 0)]
    assert len(after0)
    close(after0.patched, after0.corrupt_metric)


def test_patch_nothing_gives_corrupt_and_everything_gives_clean(models, pairs):
    model = models["tl"]
    for task in _tasks(models, pairs):
        grid = task_grid(task, [0, 1], COMPONENTS)
        sites = sorted(set(zip(grid.layer, grid.component, strict=True)))
        acts, clean, corrupt = clean_run(model, task, sites)
        assert abs(clean - corrupt) > float_bound(abs(clean), ops=TINY_READOUT_OPS)  # tell apart
        close(patched_metric(model, task, grid.iloc[:0], acts), corrupt)
        # the logits read out depend only on the last block's output at the read-out positions,
        # which are all cells: patching them all reproduces the clean metric exactly
        last = grid[(grid.component == "resid_post") & (grid.layer == 1)]
        close(patched_metric(model, task, last, acts), clean)
        same_len = len(task.clean_ids) == len(task.corrupt_ids)
        if same_len:  # equal unit counts: the whole layer-0 input reproduces the clean run
            first = grid[(grid.component == "resid_pre") & (grid.layer == 0)]
            close(patched_metric(model, task, first, acts), clean)


def test_equal_length_words_full_layer0_patch_gives_clean(models):
    a = causal_utterances()[0]  # "the big cat sees the dog": cat and dog both have 2 units
    corrupt = type(a)(a.id + "~", a.words[:2] + (a.words[5],) + a.words[3:], a.voice)
    task = _tasks(models, [Pair("eq", a, corrupt, 2)])[0]
    assert len(task.clean_ids) == len(task.corrupt_ids)
    grid = task_grid(task, [0], ["resid_pre"])
    acts, clean, corrupt_metric = clean_run(models["tl"], task, [(0, "resid_pre")])
    rounding = float_bound(abs(clean), ops=TINY_READOUT_OPS)
    assert abs(clean - corrupt_metric) > rounding  # the swap matters, beyond rounding
    close(patched_metric(models["tl"], task, grid, acts), clean)
    one = patched_metric(models["tl"], task, grid.iloc[:1], acts)
    assert abs(one - clean) > rounding  # one unit alone does not restore the word


@pytest.mark.parametrize("remote", [False, "local"])
def test_nnsight_sweep_equals_tl(models, pairs, tl_sweep, remote):
    res = patch_sweep(
        models["nnsight"], models["layout"], pairs, batch_size=16, remote=remote, progress=False
    )
    a, b = tl_sweep.table, res.table
    assert len(a) == len(b) and (b.backend == "nnsight").all()
    keys = ["pair", "metric", "component", "layer", "position"]
    assert a[keys].equals(b[keys])
    close(b.patched, a.patched)
    close(b.clean_metric, a.clean_metric)


def test_batch_size_does_not_change_values(models, pairs, tl_sweep):
    res = patch_sweep(models["tl"], models["layout"], pairs[:2], batch_size=5, progress=False)
    ref = tl_sweep.table[tl_sweep.table.pair.isin({p.id for p in pairs[:2]})]
    close(res.table.patched, ref.patched)  # another batch shape: float32 rounding only


def test_resume_after_interruption(models, pairs, tmp_path, monkeypatch):
    kw = dict(batch_size=7, progress=False, metrics=["speech"])
    full = patch_sweep(models["tl"], models["layout"], pairs, out_dir=tmp_path / "full", **kw)
    calls = {"n": 0}
    real = patching.patch_batch

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated interruption")
        return real(*args)

    monkeypatch.setattr(patching, "patch_batch", flaky)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        patch_sweep(models["tl"], models["layout"], pairs, out_dir=out, **kw)
    partial = (out / "patch_cells.log").read_text().splitlines()
    assert 0 < len(partial) < len(full.table)
    monkeypatch.setattr(patching, "patch_batch", real)
    ran = {"n": 0}

    def counting(*args):
        ran["n"] += 1
        return real(*args)

    monkeypatch.setattr(patching, "patch_batch", counting)
    resumed = patch_sweep(models["tl"], models["layout"], pairs, out_dir=out, **kw)
    pd.testing.assert_frame_equal(resumed.table, full.table, check_exact=True)
    n_batches = sum(-(-len(g) // 7) for g in full.table.groupby(["pair", "metric"]).groups.values())
    assert ran["n"] == n_batches - 3  # the three finished batches were skipped
    with pytest.raises(ValueError, match="different sweep"):
        patch_sweep(models["tl"], models["layout"], pairs, out_dir=out, **{**kw, "batch_size": 3})


def test_attribution_matches_gradient_and_backends(models, pairs):
    model = models["tl"]
    task = _tasks(models, pairs)[0]
    grid = task_grid(task, [0, 1], COMPONENTS)
    est, clean, corrupt = attribute_task(model, task, grid)
    acts, _, _ = clean_run(model, task, sorted(set(zip(grid.layer, grid.component, strict=True))))
    corrupt_acts, _ = capture(model, task.corrupt_ids[None], list(acts), task.corrupt_readout)
    eps = 0.05
    for j in range(0, len(grid), 3):  # central differences along each cell's patch direction
        c = grid.iloc[j]
        site = (int(c.layer), c.component)
        delta = acts[site][0, c.clean_position] - corrupt_acts[site][0, c.corrupt_position]
        moved = [
            float(run_edited(model, task.corrupt_ids[None],
                             [Edit.add(*site, [0], [c.corrupt_position], s * eps * delta[None])],
                             task.corrupt_readout)[0])
            for s in (1, -1)
        ]  # fmt: skip
        slope = (moved[0] - moved[1]) / (2 * eps)
        assert slope == pytest.approx(est[j] - corrupt, rel=0.05, abs=2e-4)
    a = attribution_sweep(model, models["layout"], pairs[:2], progress=False).table
    b = attribution_sweep(
        models["nnsight"], models["layout"], pairs[:2], remote="local", progress=False
    ).table
    assert (a.method == "attribution").all() and len(a) == len(b)
    close(b.patched, a.patched)


def test_rank_agreement_with_exact(models, pairs, tl_sweep):
    attr = attribution_sweep(models["tl"], models["layout"], pairs, progress=False).table
    agree = rank_agreement(tl_sweep.table, attr)
    overall = agree[(agree.metric == "all") & (agree.component == "all")].iloc[0]
    assert overall.n == len(tl_sweep.table.dropna(subset=["value"]))
    assert -1 <= overall.spearman <= 1


def test_bad_input(models, pairs, monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(RemoteError, match="NDIF_API_KEY"):
        patch_sweep(models["nnsight"], models["layout"], pairs, remote=True, progress=False)
    with pytest.raises(ValueError, match="needs the nnsight backend"):
        patch_sweep(models["tl"], models["layout"], pairs, remote="local", progress=False)
    with pytest.raises(ValueError, match=r"blocks \[5\] out of range for a 2-layer model"):
        patch_sweep(models["tl"], models["layout"], pairs, layers=[0, 5], progress=False)
    with pytest.raises(ValueError, match="metrics must be among"):
        patch_sweep(models["tl"], models["layout"], pairs, metrics=["audio"], progress=False)
    p = pairs[0]
    broken = Pair("broken", p.clean, p.clean, p.word_index)
    with pytest.raises(ValueError, match="differs in 0 words"):
        patch_sweep(models["tl"], models["layout"], [broken], progress=False)
    for sweep in (patch_sweep, attribution_sweep):  # both sweeps check their arguments alike
        with pytest.raises(ValueError, match="components must be among"):
            sweep(models["tl"], models["layout"], pairs, components=["attn"], progress=False)
        with pytest.raises(ValueError, match=r"blocks \[-1\] out of range"):
            sweep(models["tl"], models["layout"], pairs, layers=[-1], progress=False)


def test_nnsight_batches_run_only_what_their_patches_can_change(models, pairs):
    """On local nnsight a batch runs the suffix after a cached prefix through the blocks from
    its lowest patched layer up (the lower ones skipped): the same values as the whole prompt
    through every block, for every component."""
    from speech_interp.causal.patching import clean_run, patch_batch
    from speech_interp.causal.tasks import build_tasks, task_grid
    from speech_interp.core.edits import COMPONENTS, Edit, run_edited
    from speech_interp.core.kept import keep_run

    nn = models["nnsight"]
    tasks, _ = build_tasks(pairs, models["layout"], models["tl"].tokenizer, ["speech"])
    task = tasks[0]
    run = keep_run(nn, task.corrupt_ids, remote=False)
    T = len(task.corrupt_ids)
    assert run.cache.get_seq_length() == T and len(run.resid) == 3  # 2 blocks: 3 streams
    # the paths that must run the whole prompt: TransformerLens, nnsight's remote simulation
    assert keep_run(models["tl"], task.corrupt_ids, remote=False) is None
    assert keep_run(nn, task.corrupt_ids, remote="local") is None
    grid = task_grid(task, [0, 1], list(COMPONENTS))
    sites = sorted(set(zip(grid["layer"], grid["component"], strict=True)))
    acts, _, _ = clean_run(nn, task, sites)
    for layer in (0, 1):  # batches whose lowest layer is 0 (nothing skipped) and 1
        batch = grid[grid.layer == layer].reset_index(drop=True)
        assert int(batch.corrupt_position.min()) > 0  # a cached prefix is used
        fast = patch_batch(nn, task, batch, acts, False, run)
        whole = patch_batch(nn, task, batch, acts, False, None)
        close(fast, whole)  # the cached prefix changes the summation order only
    below = Edit.add(0, "resid_pre", [0], [0], torch.zeros(1, run.resid[0].shape[-1]))
    with pytest.raises(ValueError, match="below a skipped block"):
        run_edited(nn, task.corrupt_ids[None], [below], task.corrupt_readout,
                   skip_blocks={0: run.resid[1]})  # fmt: skip
    with pytest.raises(ValueError, match="local nnsight model only"):
        run_edited(models["tl"], task.corrupt_ids[None], [], task.corrupt_readout,
                   skip_blocks={0: run.resid[1]})  # fmt: skip
    # (test_nnsight_sweep_equals_tl checks whole sweeps against TransformerLens)
