"""The real-size / GPU benchmark script runs end to end at a tiny size on CPU (bench/gpu.sh runs
the same code at 7B / 9B shapes on a GPU)."""

import importlib.util
from pathlib import Path

import pytest

from tolerance import float_bound

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "bench_real_size.py"


def test_bench_real_size_tiny(capsys):
    spec = importlib.util.spec_from_file_location("bench_real_size", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    grids, exact_grid = [], bench.exact_grid

    def keep_grid(*args, **kw):  # the patched metrics, for their size
        grids.append(exact_grid(*args, **kw))
        return grids[-1]

    bench.exact_grid = keep_grid
    result = bench.main(["--shape", "tiny", "--units", "24", "--words", "4", "--tl-cells", "12",
                         "--lens-tokens", "30"])  # fmt: skip
    out = capsys.readouterr().out
    assert result["max_diff_bridge"] == 0.0  # ours on the bridge and TransformerLens agree exactly
    # nnsight: cached prefix and skipped blocks, float32 rounding of log-probability sums of
    # size ~44 (2 blocks of 64- and 128-long sums, a log-sum-exp over ~1,500 tokens): a bound
    # of ~2e-3, while the cells spread over 0.12
    scale = max(float(g[~g.isnan()].abs().max()) for g in grids)
    assert result["max_diff"] <= float_bound(scale, ops=2 * (64 + 128) + 1_500)
    assert result["per_cell_ratio"] > 0 and result["cells"] > 0
    assert result["nnsight_prefix_speedup"] > 0  # the suffix-only sweep ran and matched
    assert -1 <= result["spearman"] <= 1
    assert set(result["lens"]) == {"ours", "plain", "tl_naive"}
    assert "exact resid_pre patching, 2 x" in out and "12 shared cells" in out
    assert (SCRIPT.parent / "gpu.sh").read_text().count("bench_real_size.py") == 1
