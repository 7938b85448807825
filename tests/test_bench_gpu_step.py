import json
import sys

import pytest

from .conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import bench_gpu_step  # noqa: E402
from bench_gpu_step import compare_curves, step_gemm_shapes  # noqa: E402

from ddd_support.models import INPUT_DIM, parameter_count  # noqa: E402


def test_the_floor_counts_six_flops_per_weight_less_the_first_input_gradient():
    widths = (64, 32)
    flops = sum(2 * m * k * n for m, k, n in step_gemm_shapes(widths, batch=8)) / 8
    assert flops == 6 * (parameter_count(widths) - sum(widths) - 10) - 2 * INPUT_DIM * widths[0]


def test_tf32_curves_are_judged_against_twice_the_binomial_sampling_noise():
    same = compare_curves([0.5, 0.5], [0.5, 0.505], [0.5, 0.55], n_test=10000)
    assert same["two_sd_sampling_noise"] == pytest.approx(0.01) and same["tf32_within_sampling_noise"]
    assert same["max_abs_diff_seeds"] == pytest.approx(0.05)
    assert not compare_curves([0.5], [0.52], [0.5], n_test=10000)["tf32_within_sampling_noise"]


def test_tiny_run_times_every_part_on_the_cpu_and_skips_the_graphs(tmp_path, torch_settings_kept):
    out, log = tmp_path / "bench.json", tmp_path / "bench.log"
    assert bench_gpu_step.main(["--tiny", "--json", str(out), "--log", str(log)]) == 0
    result = json.loads(out.read_text())
    assert result["setup"]["device"] == "cpu" and result["setup"]["data"] == "synthetic"
    assert result["agreement"]["agree"] and "stacked_eager_vs_separate" in result["agreement"]
    assert "stacked_graph_vs_separate" not in result["agreement"]
    for precision in ("fp32", "tf32"):
        r = result["precisions"][precision]
        assert r["step_ms"]["eager"] > 0 and "skipped" in r["step_ms"]["graph_mlp"]
        assert "skipped" in r["step_ms"]["stacked_graph"]
        assert set(r["step_ms"]["stacked_eager"]) == set(r["floor_ms"]) == set(r["epoch"]) == {"1", "2"}
        assert all(e["per_seed_s"] > 0 for e in r["epoch"].values())
        assert r["floor_captured"] is False
    assert set(result["profile_estimate"]["per_model_k3"]) == {"mlp3", "mlp5", "mlp7"}
    assert result["checkpoint"]["sync_s"] > 0 and len(result["curves"]["test_acc_tf32"]) == 2
    assert all(t["met"] is None for t in result["targets"].values())  # not the paper size: not judged
    text = log.read_text()
    assert text.startswith("device cpu") and "CUDA graphs need a CUDA device" in text and "target " in text
