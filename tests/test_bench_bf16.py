import json
import math
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import bench_bf16  # noqa: E402


def test_bf16_benchmark_prints_both_precisions_their_ratio_and_gemm_floors(tmp_path, capsys, torch_settings_kept):
    out = tmp_path / "bf16.json"
    assert bench_bf16.main(["--tiny", "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["step_seconds"]) == set(result["gemm_floor_seconds"]) == {"fp32", "bf16"}
    for key in ("ratio_fp32_over_bf16", "ratio_paired", "gemm_ratio_fp32_over_bf16"):
        assert math.isfinite(result[key]) and result[key] > 0
    assert result["ratio_fp32_over_bf16"] == result["step_seconds"]["fp32"] / result["step_seconds"]["bf16"]
    assert all(result["of_floor"][p] == result["gemm_floor_seconds"][p] / result["step_seconds"][p]
               for p in ("fp32", "bf16"))
    assert "ratio fp32/bf16: training step" in stdout and "GEMMs alone" in stdout
