"""The committed reference runs: what they are, that their tables are what the runs give, and an
independent recomputation of the verdicts from the raw files (per-image correctness, class means,
per-image activations), written here with plain numpy and scipy, not with the package's analysis."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ddd_support.runs.reader import find_runs, load_runs
from ddd_support.analysis.claims import EFFECTS
from ddd_support.analysis.tables import summary_tables
from ddd_support.config import PROFILES
from ddd_support.book.reference import REFERENCE_INDEX, REFERENCE_ROOT

pytestmark = pytest.mark.skipif(not (REFERENCE_ROOT / REFERENCE_INDEX).is_file(),
                                reason="no committed reference runs")
TABLES = ("phases", "post_fit", "post_fit_grid", "separation", "separation_index", "separation_depth",
          "large_activation", "per_image", "correlations", "ablation", "claims", "claims_over_seeds")
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
    assert size < 20 * 2 ** 20   # cpu, paper, cpu_mlp7 (three seeds each, paper one) and two sweeps


@pytest.mark.parametrize("profile", ["cpu", "paper", "cpu_mlp7"])
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
def test_no_verdict_says_more_than_its_interval(claims):
    """holds: the interval excludes zero on the claimed side; ruled out: it excludes the effect of
    interest; and no claim reads "fails" any more."""
    over = {p: read_table(p, "claims_over_seeds") for p in ("cpu", "paper")}
    for profile, table in [*((p, t.reset_index()) for p, t in claims.items()), *over.items()]:
        assert set(table["verdict"]) <= {"holds", "ruled out", "inconclusive", "not testable"}, profile
        for row in table.itertuples():
            low = getattr(row, "low")
            if not np.isfinite(low):
                continue
            below = row.claim in BELOW
            if row.verdict == "holds":
                assert (row.high < 0) if below else (low > 0), (profile, row.model, row.claim)
            if row.verdict == "ruled out":
                assert (low > row.effect) if below else (row.high < row.effect), (profile, row.model, row.claim)


@pytest.mark.parametrize("run_dir", cpu_dirs(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_post_fit_change_recomputed_from_the_per_image_bits(run_dir, claims):
    metrics = pd.read_csv(run_dir / "metrics.csv")
    with np.load(run_dir / "test_correct.npz") as z:
        correct = np.unpackbits(z["bits"], axis=1, count=int(z["n_test"])).astype(float)
    assert np.allclose(correct.mean(axis=1), metrics["test_acc"])
    row = claims["cpu"].loc[(run_dir.parent.name, int(run_dir.name[4:]), "post_fit_rise")]
    above = metrics["noisy_acc"].to_numpy() >= 0.99
    held = [e for e in range(len(above) - 4) if above[e:e + 5].all()]   # five epochs in a row at 99%
    last = len(metrics) - 1
    end = np.arange(last - math.ceil(0.1 * last) + 1, last + 1)
    if not held or held[0] + 4 >= end[0]:
        assert row["verdict"] == "not testable"
        return
    f = held[0]
    diff = correct[end].mean(axis=0) - correct[f:f + 5].mean(axis=0)
    half = 1.959964 * diff.std(ddof=1) / np.sqrt(len(diff))
    assert row["statistic"] == pytest.approx(diff.mean(), rel=1e-5, abs=1e-9)   # the table keeps 6 digits
    assert (row["low"], row["high"]) == pytest.approx((diff.mean() - half, diff.mean() + half), rel=1e-5, abs=1e-9)
    if diff.mean() - half < 0 < 0.01 < diff.mean() + half:
        assert row["verdict"] == "inconclusive"


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def index_per_class(snapshot, layer: int) -> np.ndarray:
    """The separation index net of the unseen images (the matched-size group where recorded, else all
    test images): (cos(A, U) - cos(A, N)) / (1 - between)."""
    unseen = "unseen" if f"l{layer}_mean_unseen" in snapshot else "test"
    a, t, n = (snapshot[f"l{layer}_mean_{g}"].astype(float) for g in ("clean_a", unseen, "noisy"))
    between = np.array([np.mean([cos(a[c], a[d]) for d in range(10) if d != c]) for c in range(10)])
    return (cos(a, t) - cos(a, n)) / (1 - between)


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


@pytest.mark.parametrize("run_dir", cpu_dirs(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_separation_verdicts_recomputed_from_the_class_means(run_dir, claims):
    snaps = sorted((run_dir / "snapshots").glob("epoch_*.npz"))
    first, last = (dict(np.load(p)) for p in (snaps[0], snaps[-1]))
    layers = int(max(int(k.split("_")[0][1:]) for k in last if k.startswith("l") and k[1].isdigit()))
    # the cpu reference records unseen training images as many per class as the noisy group
    assert np.array_equal(last["count_unseen"], last["count_noisy"]), "the unseen group is not matched in size"
    trend = (index_per_class(last, layers) - index_per_class(last, 1)) - \
            (index_per_class(first, layers) - index_per_class(first, 1))
    key = (run_dir.parent.name, int(run_dir.name[4:]))
    for claim, values in (("separation_depth", trend), ("outer_separates", index_per_class(last, layers))):
        mean, low, high = t_interval(values)
        row = claims["cpu"].loc[(*key, claim)]
        assert (row["statistic"], row["low"], row["high"]) == pytest.approx((mean, low, high), abs=2e-3)
        if high < 0.1:
            assert row["verdict"] == "ruled out"


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
    def dominance(snap, l):
        return np.unique(snap[f"l{l}_img_argmax"], return_counts=True)[1].max() / len(snap[f"l{l}_img_argmax"])

    exists = {l for l in growth if growth[l] >= 2 and dominance(last, l) >= max(0.5, 2 * dominance(first, l))}
    assert row["verdict"] == ("holds" if exists else "ruled out")
    if not exists:   # then the candidate is the layer of largest ratio, and its growth is the statistic
        largest = max(growth, key=lambda l: ratio(last, l))
        assert row["statistic"] == pytest.approx(growth[largest], rel=2e-3)
        for claim in ("large_shallow", "large_input", "large_needed"):
            assert claims["cpu"].loc[(*key, claim)]["verdict"] == "not testable"


def test_claims_over_seeds_count_the_seeds_each_verdict_rests_on():
    for profile in ("cpu", "paper"):
        per_run, over = read_table(profile, "claims"), read_table(profile, "claims_over_seeds")
        for _, row in over.iterrows():
            seeds = per_run[(per_run["model"] == row["model"]) & (per_run["claim"] == row["claim"])]
            testable = seeds[seeds["verdict"] != "not testable"]
            assert row["seeds"] == len(seeds) and row["testable"] == len(testable)
            assert (row["verdict"] == "not testable") == testable.empty
            if np.isfinite(row["p_holds"]):   # Holm never makes a p-value smaller
                assert row["p_holds_holm"] >= row["p_holds"] and row["p_ruled_out_holm"] >= row["p_ruled_out"]


def test_the_paper_mlp7_top_neuron_of_layer_4_is_quoted_from_its_stored_activations():
    snaps = sorted((REFERENCE_ROOT / "paper" / "mlp7" / "seed0" / "snapshots").glob("epoch_*.npz"))
    last = dict(np.load(snaps[-1]))
    act = last["l4_top_act"][:, 0].astype(float)
    ratio = np.median(act / float(last["l4_median_abs_nonzero"]))
    row = read_table("paper", "large_activation").set_index("model").loc["mlp7"]
    assert (row["layer"], row["layers"], row["neuron"]) == (4, 6, int(last["l4_top_idx"][0])) == (4, 6, 1644)
    assert row["ratio"] == pytest.approx(ratio, rel=1e-3) and 20 < ratio < 30 and (act > 0).mean() == 1.0
    assert row["growth"] > 2   # chapter 05: "several times more than random weights give"
    assert claims_verdict("paper", "mlp7", "large_100x") == "ruled out"
    assert claims_verdict("paper", "mlp7", "large_shallow") == "ruled out"


def claims_verdict(profile: str, model: str, claim: str) -> str:
    over = read_table(profile, "claims_over_seeds")
    return str(over[(over["model"] == model) & (over["claim"] == claim)]["verdict"].iloc[0])


def test_the_paper_run_lacks_the_new_records_and_its_verdicts_say_so(claims):
    paper = claims["paper"]
    for claim in ("outer_separates", "separation_depth", "large_exists", "large_input", "large_needed"):
        assert (paper.xs(claim, level="claim")["verdict"] == "not testable").all(), claim
    assert not (REFERENCE_ROOT / "paper" / "mlp7" / "seed0" / "test_correct.npz").exists()


def test_chapter_06_calls_the_first_descent_clear_because_it_holds_in_every_model_and_seed():
    for profile in ("cpu", "paper"):
        over = read_table(profile, "claims_over_seeds")
        assert (over[over["claim"] == "test_dip"]["verdict"] == "holds").all(), profile


# --------------------------------------------------------------------------- the reference sweep
SWEEP = REFERENCE_ROOT / "sweeps" / "noise-width"


@pytest.fixture(scope="module")
def sweep():
    from ddd_support.sweeps.results import CORRECT_FILE, read_correct, read_sweep

    spec, table, epochs, record = read_sweep(SWEEP)  # validates the rises against the per-image record
    return spec, table, epochs, record, read_correct(SWEEP / CORRECT_FILE)


def test_the_reference_sweep_is_its_committed_spec_complete(sweep):
    from ddd_support.sweeps.spec import expand, load_spec

    spec, table, epochs, record, _ = sweep
    assert spec == load_spec(REFERENCE_ROOT.parent / "experiments" / "sweeps" / "noise-width.yaml")
    assert record["runs_planned"] == record["runs_complete"] == len(table) == len(expand(spec)) == 20
    assert (table["epochs"] == spec.fixed["epochs"]).all()
    assert len(epochs) == 20 * (spec.fixed["epochs"] + 1)
    index = json.loads((REFERENCE_ROOT / REFERENCE_INDEX).read_text())
    assert index["sweeps"]["noise-width"]["runs"] == 20


def _rise(correct: np.ndarray) -> tuple[float, float, float]:
    """The split-half rise written out independently: best epoch on even images, change on odd ones."""
    a, b = correct[:, 0::2].astype(float), correct[:, 1::2].astype(float)
    best = 1 + int(np.argmax(a[1:].mean(axis=1)))
    n_end = math.ceil(0.1 * (len(correct) - 1))
    diff = b[best] - b[-n_end:].mean(axis=0)
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    return diff.mean(), diff.mean() - 1.959964 * se, diff.mean() + 1.959964 * se


def test_every_rise_recomputes_from_the_per_image_record(sweep):
    _, table, epochs, _, correct = sweep
    for row in table.itertuples():
        bits = correct[f"{row.point}|{row.model}|seed{row.seed}"]
        curve = epochs[(epochs["point"] == row.point)].sort_values("epoch")
        assert np.allclose(bits.mean(axis=1), curve["test_acc"], atol=1e-6)
        rise, low, high = _rise(bits)
        assert (rise, low, high) == pytest.approx((row.rise, row.rise_low, row.rise_high), abs=1e-6)
        expected = "rises" if low > 0 else "falls" if high < 0 else "no detectable change"
        assert row.rise_outcome == expected


def _by(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(width=[int(str(w).split("-")[0]) for w in table["widths"]])


def test_chapter_07_the_rise_grows_with_noise_at_every_width(sweep):
    from ddd_support.sweeps.results import rise_difference, sweep_findings

    _, table, _, _, correct = sweep
    for widths in table["widths"].unique():
        assert rise_difference(table, correct, widths, 0.0, 0.4)["low"] > 0, widths
    assert sweep_findings(table, correct)["noise_effect_short"].startswith("at 4 of 4 widths")


def test_chapter_07_without_noise_error_falls_with_width_and_the_widest_does_not_rise(sweep):
    t = _by(sweep[1])
    clean = t[t["noise_rate"] == 0].sort_values("width")
    assert (np.diff(1 - clean["final_test_acc"].to_numpy()) < 0).all()
    from ddd_support.sweeps.results import sweep_findings
    gap = sweep_findings(sweep[1], sweep[4])["clean_gap"]
    assert gap.startswith("widest minus narrowest, end of training: -") and "to -" in gap   # interval below 0
    assert clean.iloc[-1]["rise_outcome"] == "no detectable change"
    assert set(clean.loc[clean["width"].isin([64, 256]), "rise_outcome"]) == {"rises"}


def test_chapter_07_with_noise_width_64_ends_worse_than_both_ends(sweep):
    t = _by(sweep[1])
    for rate, part in t[t["noise_rate"] > 0].groupby("noise_rate"):
        error = (1 - part.set_index("width")["final_test_acc"])
        assert error[64] >= error[16] and error[64] > error[1024], rate
        assert error.idxmax() == 64, rate   # "the intermediate width 64 ends worst"


def test_chapter_07_memorisation_and_the_model_wise_peak(sweep):
    from ddd_support.sweeps.results import width_peaks

    _, table, _, _, correct = sweep
    t = _by(table)
    noisy = t[t["noise_rate"] > 0]
    assert set(noisy.loc[noisy["final_noisy_acc"] >= 0.99, "width"]) == {256, 1024}
    assert (noisy.loc[noisy["width"] == 16, "final_noisy_acc"] < 0.5).all()
    peaks = width_peaks(table, correct).set_index("noise_rate")
    held = peaks[peaks["verdict"] == "holds"]
    assert len(held) >= 1 and (held["peak_width"] == 64).all()
    assert peaks.loc[0.0, "verdict"] == "inconclusive"


def test_chapter_07_more_noise_more_rise_holds_for_the_ends_only(sweep):
    t = _by(sweep[1])
    rise = t.pivot_table(index="noise_rate", columns="width", values="rise")
    assert not rise[64].is_monotonic_increasing                       # 7.6 at 10%, 7.0 at 20%
    assert (rise.loc[rise.index <= 0.3, 16].abs() < 0.005).all()       # width 16 flat to 30%


def test_chapter_07_width_64_climbs_back_without_fitting_all_its_wrong_labels(sweep):
    t = _by(sweep[1])
    w64 = t[(t["width"] == 64) & (t["noise_rate"] > 0)]
    assert (w64["rise_outcome"] == "rises").all()
    assert w64["final_noisy_acc"].between(0.7, 0.85).all()


def test_chapter_06_results_first_sentences_hold_on_the_reference():
    cpu, paper = read_table("cpu", "claims_over_seeds"), read_table("paper", "claims_over_seeds")
    for over in (cpu, paper):
        for claim in ("clean_first", "test_dip"):
            assert (over[over["claim"] == claim]["verdict"] == "holds").all(), claim
        assert not (over[over["claim"] == "post_fit_rise"]["verdict"] == "holds").any()
    by = cpu.set_index(["model", "claim"])["verdict"]
    for model in ("mlp5", "mlp7"):
        assert by[(model, "outer_separates")] == by[(model, "separation_depth")] == "holds"
    assert (cpu[cpu["claim"] == "large_exists"]["verdict"] == "ruled out").all()


def test_the_sweep_verdict_columns_are_what_its_own_files_give(sweep):
    from ddd_support.sweeps.results import METRIC_CLAIMS, run_key, verdict_columns

    _, table, epochs, _, correct = sweep
    assert not any(c.startswith("claim_") and c[6:] not in METRIC_CLAIMS for c in table.columns)
    for row in table.itertuples():
        m = epochs[epochs["point"] == row.point].sort_values("epoch")
        fresh = verdict_columns(m, correct[run_key(row.point, row.model, row.seed)], row.n_test, row.noise_rate)
        for key, value in fresh.items():
            stored = getattr(row, key)
            if isinstance(value, str):
                assert stored == value and value != "fails", (row.point, key)
            elif value is None or pd.isna(value):
                assert pd.isna(stored), (row.point, key)
            else:
                assert stored == pytest.approx(value, rel=1e-6, abs=1e-9), (row.point, key)


def test_the_reason_for_a_one_point_rise_holds_the_curves_wobble_about_a_point():
    """EFFECTS["post_fit_rise"]: the epoch-to-epoch change of test accuracy has a standard deviation of about
    1 point in the cpu and paper references (the reason names those two)."""
    assert "cpu and paper reference runs" in EFFECTS["post_fit_rise"].reason
    for path in sorted(p for profile in ("cpu", "paper") for p in REFERENCE_ROOT.glob(f"{profile}/mlp*/seed*/metrics.csv")):
        acc = pd.read_csv(path)["test_acc"].to_numpy()
        wobble = 100 * np.diff(acc[len(acc) // 2:]).std()
        assert 0.4 < wobble < 1.6, (path, wobble)
