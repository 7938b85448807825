"""The shared figure style: every figure fits the book's column and no text in it is small."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from ddd_support.book.reference import REFERENCE_ROOT  # noqa: E402
from ddd_support.figures.runs import (FIGURE_DPI, MAX_WIDTH, MIN_FONT_PT, plot_four_way, plot_samples,  # noqa: E402
                                      styled)
from ddd_support.runs.reader import load_runs  # noqa: E402


@styled
def wide_figure_with_small_text():
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
    for ax in axes:
        ax.plot(np.arange(1000), np.arange(1000) ** 0.5)
        ax.set_xticks([0, 250, 500, 750, 1000], ["0", "250", "500", "750", "1000"], fontsize=6)
        ax.text(0.5, 0.5, "note", fontsize=5, transform=ax.transAxes)
        ax.legend(["a curve"], fontsize=7)
    fig.suptitle("a title", fontsize=8)
    return fig


def drawn_texts(fig) -> list[Text]:
    fig.canvas.draw()  # tick labels are (re)made when the figure is drawn
    return [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]


def test_a_wide_figure_is_made_to_fit_the_column_at_the_style_dpi():
    fig = wide_figure_with_small_text()
    assert fig.get_size_inches()[0] == MAX_WIDTH and fig.dpi == FIGURE_DPI
    plt.close(fig)


def test_no_text_in_a_figure_is_smaller_than_the_minimum_even_after_drawing():
    fig = wide_figure_with_small_text()
    sizes = {t.get_text(): t.get_fontsize() for t in drawn_texts(fig)}
    assert {"note", "a curve", "a title", "1000"} <= set(sizes)
    assert min(sizes.values()) >= MIN_FONT_PT, sizes
    plt.close(fig)


def test_the_sample_grid_keeps_its_titles_at_the_minimum_size():
    images = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    fig = plot_samples(images, list(range(8)), [0, 2, 2, 3, 4, 5, 6, 0], ncols=4)
    assert fig.get_size_inches()[0] <= MAX_WIDTH
    assert min(t.get_fontsize() for t in drawn_texts(fig)) >= MIN_FONT_PT
    plt.close(fig)


@styled
def figure_with_a_legend_outside():
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for k in range(4):
        ax.plot([0, 1], [k, k + 1], label=f"a rather long legend entry {k}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def test_what_is_drawn_outside_the_axes_still_fits_the_column():
    fig = figure_with_a_legend_outside()
    fig.canvas.draw()  # as when it is saved: the layout is applied
    drawn = fig.get_tightbbox(fig.canvas.get_renderer()).width
    assert drawn <= MAX_WIDTH * 1.01, drawn
    plt.close(fig)


def test_the_four_way_figure_keeps_its_width_and_layout(recwarn):
    """Measured before it is drawn, a constrained figure looks wider than it is (no layout, no
    wrapped titles yet): fitting it must not shrink it until its axes collapse."""
    runs = load_runs(sorted((REFERENCE_ROOT / "cpu").glob("mlp7/seed*")))
    fig = plot_four_way(runs)
    assert fig.get_size_inches()[0] >= MAX_WIDTH * 0.9
    fig.canvas.draw()
    assert not [w for w in recwarn if "collapsed" in str(w.message)]
    plt.close(fig)
