"""The committed reference runs: what they are, that their tables are what the runs give, and an
independent recomputation of the verdicts from the raw files (per-image correctness, class means,
per-image activations), written here with plain numpy and scipy, not with the package's analysis."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ddd_support.analysis import find_runs, load_runs
from ddd_support.analysis.tables import summary_tables
from ddd_support.config import PROFILES
from ddd_support.reference import REFERENCE_INDEX, REFERENCE_ROOT

pytestmark = pytest.mark.skipif(not (REFERENCE_ROOT / REFERENCE_INDEX).is_file(),
                                reason="no committed reference runs")
TABLES = ("phases", "post_fit", "separation", "separation_index", "separation_depth", "large_activation",
          "correlations", "ablation", "claims", "claims_over_seeds")
#: Claims whose holding side is below zero (a fall, a cost).
BELOW = {"test_dip", "large_needed"}


@pytest.fixture(scope="module")
def index() -> dict:
    return json.loads((REFERENCE_ROOT / REFERENCE_INDEX).read_text())["profiles"]


def read_table(profile: str, name: str) -> pd.DataFrame:
    path = REFERENCE_ROOT / profile / "tables" / f"{name}.csv"
    return pd.read_csv(path) if path.stat().st_size > 1 else pd.DataFrame()


@pytest.fixture(scope="module")
def claims() -> dict[str, pd.DataFrame]:
    return {p: read_table(p, "claims").set_index(["model", "seed", "claim"]) for p in ("cpu", "paper")}


def cpu_dirs():
    return sorted((REFERENCE_ROOT / "cpu").glob("mlp*/seed*"))


def test_cpu_reference_is_exactly_the_cpu_profile_for_three_seeds(index):
    cpu = index["cpu"]
    assert cpu["seeds"] == [0, 1, 2] and cpu["models"] == ["mlp3", "mlp5", "mlp7"]
    assert cpu["overrides"] == []
    runs = load_runs(find_runs(REFERENCE_ROOT, profile="cpu"))
    assert len(runs) == 9
    expected = PROFILES["cpu"].config("mlp3").epochs
    for run in runs:
        assert run.status == "complete" and int(run.metrics["epoch"].max()) == expected
        assert run.schema_version == 2 and run.test_correct is not None
        assert (run.path / "ablation.csv").is_file() and (run.path / "ablation_test_correct.npz").is_file()
        assert not list(run.path.glob("checkpoint*"))


def test_reference_is_small(index):
    size = sum(f.stat().st_size for f in REFERENCE_ROOT.rglob("*") if f.is_file())
    assert size < 15 * 2 ** 20


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_committed_tables_are_what_the_runs_give(profile):
    recomputed = summary_tables(load_runs(find_runs(REFERENCE_ROOT, profile=profile)))
    for name in TABLES:
        stored, fresh = read_table(profile, name), recomputed[name]
        assert list(stored.columns) == list(fresh.columns), name
        assert len(stored) == len(fresh), name
        for col in stored.columns:
            if pd.api.types.is_numeric_dtype(stored[col]) and pd.api.types.is_numeric_dtype(fresh[col]):
                np.testing.assert_allclose(stored[col].astype(float), fresh[col].astype(float),
                                           rtol=1e-4, atol=1e-6, err_msg=f"{name}.{col}")
            else:
                as_text = lambda c: [("" if pd.isna(v) else str(v)) for v in c]  # noqa: E731  (CSV: "" reads as NaN)
                assert as_text(stored[col]) == as_text(fresh[col]), f"{name}.{col}"


# --------------------------------------------------------------------------- independent recomputation
def test_every_verdict_with_an_interval_lies_outside_its_noise(claims):
    """A claim holds only where its 95% interval excludes the null on the claimed side."""
    for profile, table in claims.items():
        for (model, seed, claim), row in table.iterrows():
            if row["verdict"] == "holds" and np.isfinite(row["low"]):
                assert (row["high"] < 0) if claim in BELOW else (row["low"] > 0), (profile, model, seed, claim)
            if row["verdict"] == "fails" and np.isfinite(row["low"]) and claim not in ("large_input", "large_needed"):
                assert not ((row["high"] < 0) if claim in BELOW else (row["low"] > 0)), (profile, model, seed, claim)


@pytest.mark.parametrize("run_dir", cpu_dirs(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_post_fit_change_recomputed_from_the_per_image_bits(run_dir, claims):
    metrics = pd.read_csv(run_dir / "metrics.csv")
    with np.load(run_dir / "test_correct.npz") as z:
        correct = np.unpackbits(z["bits"], axis=1, count=int(z["n_test"])).astype(float)
    assert np.allclose(correct.mean(axis=1), metrics["test_acc"])
    row = claims["cpu"].loc[(run_dir.parent.name, int(run_dir.name[4:]), "post_fit_rise")]
    fitted = np.flatnonzero(metrics["noisy_acc"].to_numpy() >= 0.99)
    last = len(metrics) - 1
    end = np.arange(last - math.ceil(0.1 * last) + 1, last + 1)
    if not len(fitted) or fitted[0] + 4 >= end[0]:
        assert row["verdict"] == "not testable"
        return
    f = fitted[0]
    diff = correct[end].mean(axis=0) - correct[f:f + 5].mean(axis=0)
    half = 1.959964 * diff.std(ddof=1) / np.sqrt(len(diff))
    assert row["statistic"] == pytest.approx(diff.mean(), rel=1e-5, abs=1e-9)   # the table keeps 6 digits
    assert (row["low"], row["high"]) == pytest.approx((diff.mean() - half, diff.mean() + half), rel=1e-5, abs=1e-9)
    assert row["verdict"] == ("holds" if diff.mean() - half > 0 else "fails")


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def index_per_class(snapshot, layer: int) -> np.ndarray:
    a, b, n = (snapshot[f"l{layer}_mean_{g}"].astype(float) for g in ("clean_a", "clean_b", "noisy"))
    between = np.array([np.mean([cos(a[c], a[d]) for d in range(10) if d != c]) for c in range(10)])
    return (cos(a, b) - cos(a, n)) / (1 - between)


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


@pytest.mark.parametrize("run_dir", cpu_dirs(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_separation_verdicts_recomputed_from_the_class_means(run_dir, claims):
    snaps = sorted((run_dir / "snapshots").glob("epoch_*.npz"))
    first, last = (dict(np.load(p)) for p in (snaps[0], snaps[-1]))
    layers = int(max(int(k.split("_")[0][1:]) for k in last if k.startswith("l") and k[1].isdigit()))
    trend = (index_per_class(last, layers) - index_per_class(last, 1)) - \
            (index_per_class(first, layers) - index_per_class(first, 1))
    key = (run_dir.parent.name, int(run_dir.name[4:]))
    for claim, values in (("separation_depth", trend), ("outer_separates", index_per_class(last, layers))):
        mean, low, high = t_interval(values)
        row = claims["cpu"].loc[(*key, claim)]
        assert (row["statistic"], row["low"], row["high"]) == pytest.approx((mean, low, high), abs=2e-3)
        assert row["verdict"] == ("holds" if low > 0 else "fails")


@pytest.mark.parametrize("run_dir", cpu_dirs(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_large_activation_existence_recomputed_from_the_per_image_activations(run_dir, claims):
    snaps = sorted((run_dir / "snapshots").glob("epoch_*.npz"))
    first, last = (dict(np.load(p)) for p in (snaps[0], snaps[-1]))
    key = (run_dir.parent.name, int(run_dir.name[4:]))
    row = claims["cpu"].loc[(*key, "large_exists")]
    layers = int(max(int(k.split("_")[0][1:]) for k in last if k.startswith("l") and k[1].isdigit()))

    def ratio(snap, layer):
        med = snap[f"l{layer}_img_median_nonzero"].astype(float)
        return np.nanmedian(np.where(med > 0, snap[f"l{layer}_img_top"] / np.where(med > 0, med, 1), np.nan))

    growth = {l: ratio(last, l) / ratio(first, l) for l in range(1, layers + 1)}
    dominance = {l: np.unique(last[f"l{l}_img_argmax"], return_counts=True)[1].max() / len(last[f"l{l}_img_argmax"])
                 for l in range(1, layers + 1)}
    exists = {l for l in growth if growth[l] >= 2 and dominance[l] >= 0.5}
    assert (row["verdict"] == "holds") == bool(exists)
    if not exists:   # then the candidate is the layer of largest ratio, and its growth is the statistic
        largest = max(growth, key=lambda l: ratio(last, l))
        assert row["statistic"] == pytest.approx(growth[largest], rel=2e-3)
        for claim in ("large_shallow", "large_input", "large_needed"):
            assert claims["cpu"].loc[(*key, claim)]["verdict"] == "not testable"


def test_claims_over_seeds_hold_only_where_every_testable_seed_holds():
    for profile in ("cpu", "paper"):
        per_run, over = read_table(profile, "claims"), read_table(profile, "claims_over_seeds")
        for _, row in over.iterrows():
            seeds = per_run[(per_run["model"] == row["model"]) & (per_run["claim"] == row["claim"])]
            testable = seeds[seeds["verdict"] != "not testable"]
            expected = ("not testable" if testable.empty else
                        "holds" if (testable["verdict"] == "holds").all() else "fails")
            assert row["verdict"] == expected and row["testable"] == len(testable)


def test_the_paper_run_lacks_the_new_records_and_its_verdicts_say_so(claims):
    paper = claims["paper"]
    for claim in ("outer_separates", "separation_depth", "large_exists", "large_input", "large_needed"):
        assert (paper.xs(claim, level="claim")["verdict"] == "not testable").all(), claim
    assert not (REFERENCE_ROOT / "paper" / "mlp7" / "seed0" / "test_correct.npz").exists()


def test_chapter_06_calls_the_first_descent_clear_because_it_holds_in_every_model_and_seed():
    for profile in ("cpu", "paper"):
        over = read_table(profile, "claims_over_seeds")
        assert (over[over["claim"] == "test_dip"]["verdict"] == "holds").all(), profile
