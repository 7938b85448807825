"""The paper's findings as yes/no tests on one run, for the conclusions chapter."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .phases import Phases, detect_phases, test_noise_floor, test_set_size

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .rundata import RunData


def first_epoch_at(metrics: pd.DataFrame, column: str, level: float = 0.5) -> int | None:
    """First epoch at which ``column`` reaches ``level`` (None if never)."""
    reached = metrics.loc[metrics[column] >= level, "epoch"]
    return int(reached.iloc[0]) if len(reached) else None


def strongest_correlation(corr: pd.DataFrame, kind: str) -> float:
    """Largest |Pearson r| of a kind ('input' or 'output'), leaving out the neuron's own pre-activation."""
    rows = corr[(corr["kind"] == kind) & (corr["quantity"] != "pre-activation")]
    return float(rows["pearson"].abs().max())


def evaluate_claims(run: "RunData", threshold: float = 100.0) -> dict[str, bool]:
    """Each finding of Kubo et al. (2026) tested on ``run``: claim -> holds in this run."""
    from .tables import large_activation_rows, separation_rows  # tables builds on this module

    phases = detect_phases(run.metrics, n_test=test_set_size(run)).as_dict()
    return claims_from(run.metrics, phases, separation_rows([run]), large_activation_rows([run], threshold).iloc[0],
                       threshold)


def claims_from(metrics: pd.DataFrame, phases: "Mapping[str, object]", separation: pd.DataFrame,
                large: "Mapping[str, object]", threshold: float = 100.0) -> dict[str, bool]:
    """The claims of ``evaluate_claims`` from one run's summary rows: its metrics, its phases (a
    ``Phases.as_dict`` or ``phase_table`` row), its ``separation_rows`` and its ``large_activation_rows`` row."""
    change = separation.sort_values("layer")["change"]
    clean50, noisy50 = first_epoch_at(metrics, "clean_acc"), first_epoch_at(metrics, "noisy_acc")
    return {
        "clean learned before noisy (50% reached)": clean50 is not None and (noisy50 is None or clean50 < noisy50),
        "noisy labels fitted (99%)": bool(pd.notna(phases["noisy_fit_end_epoch"])),
        "test accuracy dips after a peak": bool(pd.notna(phases["test_dip_epoch"])),
        "test accuracy recovers after the noisy fit (double descent)": bool(phases["regeneralizes"]),
        "outer layer separates more than layer 1": bool(change.iloc[-1] < min(change.iloc[0], 0.0)),
        f"a top neuron >= {threshold:g}x the median": bool(large["ratio"] >= threshold),
        "...in the shallow half of the network": bool(large["largest_layer"] <= large["layers"] / 2),
        "...tracks the image more than the outputs": bool(large["input_r"] > large["output_r"]),
    }


def describe_phases(model: str, p: Phases) -> str:
    """One sentence on a model's test-accuracy story: peak, dip, recovery or not."""
    name = model.upper()
    if p.test_peak_epoch is None:
        return f"{name} shows no early test peak (ends at {p.final_test_acc:.1%})"
    text = (f"{name} peaks at epoch {p.test_peak_epoch} ({p.test_peak_acc:.1%})"
            f" and dips to {p.test_dip_acc:.1%} at epoch {p.test_dip_epoch}")
    if p.regeneralizes:
        return text + f", then recovers to {p.regen_acc:.1%} at epoch {p.regen_epoch}"
    return text + f" and ends at {p.final_test_acc:.1%} without recovering"


# --------------------------------------------------------------------------- over seeds, in words
def phases_over_seeds(phases: pd.DataFrame, n_test: int) -> str:
    """One clause per model from a ``phase_table`` of several seeds: peak, dip, fit, gain, end (means)."""
    parts = []
    for model, rows in phases.groupby("model", sort=False):
        fitted = int(rows["noisy_fit_end_epoch"].notna().sum())
        parts.append(
            f"{str(model).upper()} peaks at {rows['test_peak_acc'].mean():.1%} "
            f"(epoch {rows['test_peak_epoch'].median():.0f}), dips to {rows['test_dip_acc'].mean():.1%}, "
            f"fits 99% of the noisy labels in {fitted} of {len(rows)} seed(s), gains "
            f"{rows['regen_gain'].mean():+.1%} after the fit and ends at {rows['final_test_acc'].mean():.1%}")
    floor = test_noise_floor(float(phases["test_dip_acc"].mean()), n_test)
    over = "means over seeds" if phases.groupby("model")["model"].size().max() > 1 else "one seed"
    return "; ".join(parts) + (f" ({over}; with {n_test:,} test images a change under "
                               f"{floor:.1%} is within sampling noise)")


def separation_over_seeds(separation: pd.DataFrame) -> str:
    """Per model, the mean change of the clean/noisy cosine in layer 1 and in the last layer."""
    parts = []
    for model, rows in separation.groupby("model", sort=False):
        last_layer = int(rows["layer"].max())
        first = rows.loc[rows["layer"] == 1, "change"].mean()
        last = rows.loc[rows["layer"] == last_layer, "change"].mean()
        first, last = round(first, 3) + 0.0, round(last, 3) + 0.0  # no "-0.000"
        parts.append(f"{str(model).upper()} {first:+.3f} in layer 1, {last:+.3f} in layer {last_layer}")
    return "; ".join(parts)


def large_activation_over_seeds(large: pd.DataFrame) -> str:
    """Per model, the range of the top-neuron ratio over seeds, its layers, and input vs output |r|."""
    parts = []
    for model, rows in large.groupby("model", sort=False):
        layers = ", ".join(str(int(v)) for v in rows["largest_layer"])
        low, high = f"{rows['ratio'].min():.0f}", f"{rows['ratio'].max():.0f}"
        parts.append(f"{str(model).upper()} {low if low == high else f'{low}x to {high}'}x "
                     f"(layer {layers} of {int(rows['layers'].iloc[0])}; input |r| "
                     f"{rows['input_r'].mean():.2f} vs output |r| {rows['output_r'].mean():.2f})")
    return "; ".join(parts)
