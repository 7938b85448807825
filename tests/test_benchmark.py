import json
import math
import sys

from .conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import bench_trainer  # noqa: E402
from bench_trainer import gemm_shapes  # noqa: E402

from ddd_support.models import INPUT_DIM, parameter_count  # noqa: E402


def test_step_gemm_flops_are_six_per_weight_less_the_first_input_gradient():
    widths = (64, 64, 64)
    flops = sum(2 * m * k * n for m, k, n in gemm_shapes(widths, batch=8)) / 8
    weights = parameter_count(widths) - sum(widths) - 10
    assert flops == 6 * weights - 2 * INPUT_DIM * widths[0]


def test_tiny_benchmark_writes_every_variant_and_ratio(tmp_path, capsys, torch_settings_kept):
    out = tmp_path / "bench.json"
    assert bench_trainer.main(["--tiny", "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["variants"]) >= {"bare", "instrumented", "conventional", "end_to_end"}
    assert set(result["ratios"]) >= {"instrumented_over_bare", "ours_over_conventional", "achieved_over_ceiling"}
    assert all(math.isfinite(v) and v > 0 for v in result["ratios"].values())
    assert [row["k"] for row in result["multiseed"]["rows"]] == [1, 2]
    assert result["setup"]["data"] == "synthetic" and "ratios:" in stdout
