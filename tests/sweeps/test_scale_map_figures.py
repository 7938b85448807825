import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ddd_support.analysis.stats import HOLDS, INCONCLUSIVE, NOT_TESTABLE, RULED_OUT  # noqa: E402
from ddd_support.figures.sweeps import (VERDICT_STYLES, axis_value_label, plot_finding_map,  # noqa: E402
                                        plot_growth_over_epochs)
from ddd_support.sweeps.scale_map import finding_cells, finding_runs, run_axes  # noqa: E402
from tests.sweeps.test_scale_map import PLANTED, SPEC, _activation  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_the_finding_map_has_a_panel_per_axis_with_the_base_value_in_each():
    axes = run_axes(SPEC)
    fig = plot_finding_map(finding_runs(PLANTED, axes, "large_exists"), finding_cells(PLANTED, axes, "large_exists"),
                           "Large activation", "growth", threshold=2.0)
    panels = [a for a in fig.axes if a.get_xlabel()]
    assert [a.get_xlabel() for a in panels] == ["batch\nsize", "hidden\nlayers", "epochs"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["64\n(base)", "256"]
    assert [t.get_text() for t in panels[1].get_xticklabels()] == ["4", "6\n(base)"]
    dots = [line for line in panels[0].get_lines() if line.get_marker() in ("o", "v") and len(line.get_xdata())]
    assert len(dots) == 5                                           # three base seeds, two at batch 256
    styles = {(matplotlib.colors.to_hex(d.get_color()), d.get_marker()) for d in dots}
    assert styles == {(VERDICT_STYLES[v][0].lower(), VERDICT_STYLES[v][1]) for v in (HOLDS, RULED_OUT)}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]   # only the verdicts shown, and the cells
    assert legend == ["one run: holds", "one run: ruled out", "cell mean, 95% interval"]


def test_every_verdict_has_its_own_colour_and_marker_and_thousands_read_as_k():
    assert len(set(VERDICT_STYLES.values())) == len(VERDICT_STYLES) == 4
    assert set(VERDICT_STYLES) == {HOLDS, RULED_OUT, INCONCLUSIVE, NOT_TESTABLE}
    assert [axis_value_label(v, b) for v, b in ((2500, False), (10000, True), (64, False), (3e-4, False))] == [
        "2.5k", "10k\n(base)", "64", "0.0003"]


def test_growth_over_epochs_draws_each_runs_candidate_layer():
    activation = pd.concat([_activation("base", 0, [0, 50, 100, 150], [1.0, 1.2, 2.1, 2.4], [0.1, 0.4, 0.6, 0.9]),
                            _activation("batch_size=256", 0, [0, 50, 150], [1.0, 1.1, 1.3], [0.1, 0.2, 0.3])])
    fig = plot_growth_over_epochs(activation, run_axes(SPEC), "Growth")
    lines = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) > 2]
    assert [list(line.get_ydata()) for line in lines] == [[1.0, 1.2, 2.1, 2.4], [1.0, 1.1, 1.3]]
    assert np.isclose(fig.axes[0].get_lines()[-1].get_ydata()[0], 2.0)  # the threshold line


def test_growth_lines_are_named_by_their_cell_once_each():
    activation = pd.concat([_activation("base", s, [0, 50, 150], [1.0, 1.2, 2.4], [0.1, 0.4, 0.9]) for s in (0, 1)]
                           + [_activation("batch_size=256", 0, [0, 50, 150], [1.0, 1.1, 1.3], [0.1, 0.2, 0.3])])
    fig = plot_growth_over_epochs(activation, run_axes(SPEC), "Growth")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["base", "batch size 256"]
