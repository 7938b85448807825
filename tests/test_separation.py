"""Clean/noisy separation on snapshots whose class means have known cosines."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis.rundata import RunData
from ddd_support.analysis.separation import (cosine_similarity, layer_separation,
                                             separation_summary, separation_table)

SQRT_HALF = np.sqrt(0.5)


def class_means(rows: dict[int, list[float]], width: int = 3) -> np.ndarray:
    """(10, width) means: the given rows, NaN (empty class) for the rest."""
    out = np.full((10, width), np.nan)
    for cls, row in rows.items():
        out[cls] = row
    return out


def write_run(path: Path, snapshots: dict[int, dict[str, np.ndarray]]) -> RunData:
    """A two-layer run with only the snapshot arrays separation reads."""
    (path / "snapshots").mkdir(parents=True)
    for epoch, arrays in snapshots.items():
        np.savez(path / "snapshots" / f"epoch_{epoch:05d}.npz", epoch=epoch, **arrays)
    return RunData(path=path, config={"model": "mlp3", "seed": 0, "hidden_widths": [3, 3]},
                   provenance={}, metrics=pd.DataFrame({"epoch": [0]}),
                   snapshot_epochs=sorted(snapshots), probe={}, labels={})


def snapshot(layer1_noisy: np.ndarray, layer2_noisy: np.ndarray) -> dict[str, np.ndarray]:
    clean = class_means({0: [1, 0, 0], 1: [0, 2, 0], 2: [1, 1, 1]})
    by_noisy = class_means({0: [0, 1, 0], 1: [0, 1, 0]})
    return {"l1_mean_clean": clean, "l1_mean_noisy": layer1_noisy, "l1_mean_noisy_by_noisy": by_noisy,
            "l2_mean_clean": clean, "l2_mean_noisy": layer2_noisy, "l2_mean_noisy_by_noisy": by_noisy}


@pytest.fixture
def run(tmp_path: Path) -> RunData:
    same = class_means({0: [2, 0, 0], 1: [0, 5, 0], 2: [3, 3, 3]})           # cosine 1 everywhere
    apart = class_means({0: [1, 1, 0], 1: [1, 0, 0], 2: [0, 0, 0]})          # 1/sqrt2, 0, zero vector
    return write_run(tmp_path, {0: snapshot(same, same), 10: snapshot(same, apart)})


def test_cosine_of_two_vectors():
    assert cosine_similarity([1, 0], [1, 1]) == pytest.approx(SQRT_HALF)


def test_cosine_ignores_vector_length():
    assert cosine_similarity([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)


def test_cosine_of_rows():
    np.testing.assert_allclose(cosine_similarity([[1, 0], [0, 1]], [[0, 3], [0, 2]]), [0.0, 1.0])


def test_cosine_with_a_zero_or_nan_vector_is_nan():
    assert np.isnan(cosine_similarity([0, 0], [1, 1]))
    assert np.isnan(cosine_similarity([np.nan, 1], [1, 1]))


def test_cosine_rejects_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        cosine_similarity([1, 0], [1, 0, 0])


def test_separation_table_gives_the_known_cosines(run):
    table = separation_table(run).set_index(["epoch", "layer", "class"])["cosine"]
    assert table[(0, 1, 0)] == pytest.approx(1.0)
    assert table[(10, 2, 0)] == pytest.approx(SQRT_HALF)
    assert table[(10, 2, 1)] == pytest.approx(0.0)


def test_separation_table_skips_empty_classes_and_zero_means(run):
    table = separation_table(run)
    assert set(table[(table["epoch"] == 0)]["class"]) == {0, 1, 2}
    assert set(table[(table["epoch"] == 10) & (table["layer"] == 2)]["class"]) == {0, 1}
    assert table["cosine"].notna().all()


def test_grouping_by_noisy_label_reads_the_by_noisy_means(run):
    table = separation_table(run, by="noisy").set_index(["epoch", "layer", "class"])["cosine"]
    assert table[(0, 1, 0)] == pytest.approx(0.0)
    assert table[(0, 1, 1)] == pytest.approx(1.0)
    assert len(table) == 2 * 2 * 2


def test_separation_table_rejects_unknown_grouping(run):
    with pytest.raises(ValueError, match="by must be"):
        separation_table(run, by="label")


def test_layer_separation_averages_over_classes(run):
    layers = layer_separation(separation_table(run)).set_index(["epoch", "layer"])
    assert layers.loc[(10, 2), "cosine"] == pytest.approx((SQRT_HALF + 0.0) / 2)
    assert layers.loc[(10, 2), "n_classes"] == 2
    assert layers.loc[(10, 1), "cosine"] == pytest.approx(1.0)


def test_separation_summary_reports_first_and_last_snapshot_per_layer(run):
    summary = separation_summary(layer_separation(separation_table(run))).set_index("layer")
    assert summary.loc[2, "first"] == pytest.approx(1.0)
    assert summary.loc[2, "last"] == pytest.approx(SQRT_HALF / 2)
    assert summary.loc[2, "change"] == pytest.approx(SQRT_HALF / 2 - 1.0)
    assert summary.loc[1, "change"] == pytest.approx(0.0)
