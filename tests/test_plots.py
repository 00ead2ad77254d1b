"""Tests for ehrexplain.viz.plots: check what is drawn, not just that something is."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from ehrexplain.viz import (
    plot_attention_maps,
    plot_code_attributions,
    plot_convergence,
    plot_deletion_curves,
    plot_method_comparison,
    plot_patient_timeline,
    plot_rollout_matrix,
)
from ehrexplain.viz.plots import GROUND_TRUTH_LEGEND, NEGATIVE_COLOR, POSITIVE_COLOR, UNSIGNED_COLOR

CODES = ["C01", "C02", "C03", "C04"]
SCORES = [0.2, -0.9, 0.5, 0.05]
NAMES = {"C01": "sepsis", "C02": "heart failure"}


def _labels(ax):
    return [t.get_text() for t in ax.get_yticklabels()]


def _plot_axes(fig):
    """Axes that hold data (colorbar axes have no ticks labels of ours and are excluded)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


# --------------------------------------------------------------------------- bars
def test_bars_sorted_by_magnitude_and_named():
    fig = plot_code_attributions(CODES, SCORES, names=NAMES)
    ax = fig.axes[0]
    assert isinstance(fig, Figure)
    assert len(ax.patches) == 4
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([-0.9, 0.5, 0.2, 0.05])
    labels = _labels(ax)
    assert labels[0] == "C02 — heart failure"
    assert labels[2] == "C01 — sepsis"
    assert labels[1] == "C03"  # no name given: code alone
    # The largest |score| is drawn at the top.
    ys = [p.get_y() for p in ax.patches]
    assert ax.yaxis_inverted() and ys == sorted(ys)


def test_bar_colours_follow_sign():
    ax = plot_code_attributions(CODES, SCORES).axes[0]
    by_width = {round(p.get_width(), 3): p.get_facecolor() for p in ax.patches}
    positive, negative = by_width[0.5], by_width[-0.9]
    assert positive == pytest.approx(to_rgba(POSITIVE_COLOR))
    assert negative == pytest.approx(to_rgba(NEGATIVE_COLOR))
    assert positive[0] > positive[2] and negative[2] > negative[0]  # red vs blue


def test_unsigned_scores_use_one_colour_and_signed_flag_overrides():
    ax = plot_code_attributions(CODES, [0.1, 0.9, 0.3, 0.2]).axes[0]
    assert {p.get_facecolor() for p in ax.patches} == {to_rgba(UNSIGNED_COLOR)}
    ax = plot_code_attributions(CODES, [0.1, 0.9, 0.3, 0.2], signed=True).axes[0]
    assert {p.get_facecolor() for p in ax.patches} == {to_rgba(POSITIVE_COLOR)}


@pytest.mark.parametrize("truth", [{"C03"}, [0, 0, 1, 0], torch.tensor([0, 0, 1, 0]), ["C03"]])
def test_ground_truth_marked(truth):
    ax = plot_code_attributions(CODES, SCORES, ground_truth=truth).axes[0]
    ticks = {t.get_text(): t for t in ax.get_yticklabels()}
    assert "★ C03" in ticks and ticks["★ C03"].get_fontweight() == "bold"
    assert sum(label.startswith("★") for label in ticks) == 1
    assert ticks["C01"].get_fontweight() == "normal"


def test_top_k_title_and_array_inputs():
    fig = plot_code_attributions(np.array(CODES), torch.tensor(SCORES), top_k=2, title="patient 7")
    ax = fig.axes[0]
    assert _labels(ax) == ["C02", "C03"]
    assert ax.get_title() == "patient 7"


def test_existing_ax_is_used():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_code_attributions(CODES, SCORES, ax=ax) is fig
    assert len(ax.patches) == 4 and fig.axes == [ax]


def test_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match=r"length 4.*length 3"):
        plot_code_attributions(CODES, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"length 3.*length 4"):
        plot_code_attributions(CODES, SCORES, ground_truth=[1, 0, 0])


# --------------------------------------------------------------------------- comparison
def test_method_comparison_shares_code_order():
    fig = plot_method_comparison(
        CODES, {"IG": SCORES, "rollout": np.array([0.4, 0.1, 0.3, 0.2])}, names=NAMES, ground_truth={"C02"}
    )
    axes = _plot_axes(fig)
    assert [ax.get_title() for ax in axes] == ["IG", "rollout"]
    assert all(len(ax.patches) == 4 for ax in axes)
    # Order is the first method's |score| order, reused for the second method.
    assert [p.get_width() for p in axes[1].patches] == pytest.approx([0.1, 0.3, 0.4, 0.2])
    assert _labels(axes[0])[0] == "★ C02 — heart failure"
    assert {p.get_facecolor() for p in axes[1].patches} == {to_rgba(UNSIGNED_COLOR)}
    # Short per-panel labels, the colour legend once for the figure (long labels used to overlap).
    assert [ax.get_xlabel() for ax in axes] == ["attribution", "importance"]
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == [GROUND_TRUTH_LEGEND, "signed panels: raises the prediction", "lowers it"]


def test_method_comparison_length_mismatch():
    with pytest.raises(ValueError, match=r"length 4.*'bad'.*length 2"):
        plot_method_comparison(CODES, {"IG": SCORES, "bad": [1.0, 2.0]})


# --------------------------------------------------------------------------- heat maps
def test_patient_timeline_matrix_equals_input():
    visits = [["C01", "C02"], ["C02", "C03"], ["C01"]]
    scores = [[0.5, -0.2], [0.1, 0.7], [0.3]]
    fig = plot_patient_timeline(visits, scores, names=NAMES)
    ax = fig.axes[0]
    data = ax.images[0].get_array()
    expected = np.array([[0.5, np.nan, 0.3], [-0.2, 0.1, np.nan], [np.nan, 0.7, np.nan]])
    assert data.shape == (3, 3)
    np.testing.assert_allclose(np.ma.filled(data.astype(float), np.nan), expected)
    assert _labels(ax) == ["C01 — sepsis", "C02 — heart failure", "C03"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"] and ax.get_xlabel() == "visit"
    # Signed scores: diverging colormap centred at 0, plus a colorbar.
    vmin, vmax = ax.images[0].get_clim()
    assert vmin == pytest.approx(-0.7) and vmax == pytest.approx(0.7)
    assert len(fig.axes) == 2
    # Absent cells are grey, and a legend says what grey means.
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["not recorded in that visit"]


def test_patient_timeline_accepts_padded_2d():
    visits = [["C01", "C02"], ["C03"]]
    padded = torch.tensor([[0.5, 0.2], [0.9, 0.0]])
    data = plot_patient_timeline(visits, padded).axes[0].images[0].get_array()
    np.testing.assert_allclose(
        np.ma.filled(data.astype(float), np.nan), [[0.5, np.nan], [0.2, np.nan], [np.nan, 0.9]]
    )
    assert plot_patient_timeline(visits, padded).axes[0].images[0].get_clim()[0] == 0.0


def test_patient_timeline_shape_errors():
    with pytest.raises(ValueError, match=r"length 2.*length 1"):
        plot_patient_timeline([["C01"], ["C02"]], [[0.1]])
    with pytest.raises(ValueError, match=r"visit 1 has 2 codes but 1 scores"):
        plot_patient_timeline([["C01"], ["C02", "C03"]], [[0.1], [0.2]])


def test_rollout_matrix():
    matrix = np.array([[1.0, 0.0, 0.0], [0.2, 0.8, 0.0], [0.1, 0.3, 0.6]])
    fig = plot_rollout_matrix(torch.tensor(matrix)[None], tokens=["CLS", "C01", "C02"])
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), matrix)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["CLS", "C01", "C02"]
    with pytest.raises(ValueError, match="square"):
        plot_rollout_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"length 2.*length 3"):
        plot_rollout_matrix(matrix, tokens=["a", "b"])


def test_every_star_has_a_legend_that_says_what_it_marks():
    with_truth = plot_code_attributions(["C01", "C02"], [0.9, -0.2], ground_truth={"C01"})
    assert [t.get_text() for t in with_truth.legends[0].get_texts()] == [GROUND_TRUTH_LEGEND]
    compared = plot_method_comparison(["C01", "C02"], {"a": [0.9, 0.1], "b": [0.2, 0.3]}, ground_truth={"C02"})
    assert len(compared.legends) == 1  # once for the figure, not once per panel
    assert not plot_code_attributions(["C01", "C02"], [0.9, -0.2]).legends  # no ★, no legend


def test_rollout_matrix_outlines_the_explained_row():
    fig = plot_rollout_matrix(np.eye(3), tokens=["C01", "C02", "C03"], marked_row=0)
    ax = fig.axes[0]
    (outline,) = [p for p in ax.patches if not p.get_fill()]
    assert (outline.get_y(), outline.get_width(), outline.get_height()) == (-0.5, 3, 1)  # row 0, all columns
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["row 0: the explanation"]
    assert not plot_rollout_matrix(np.eye(3)).axes[0].patches[1:]  # nothing outlined unless asked


def test_attention_maps_grid():
    rng = np.random.default_rng(0)
    layers = [rng.random((2, 4, 4)), torch.rand(1, 2, 4, 4), rng.random((4, 4))]
    fig = plot_attention_maps(layers, tokens=list("abcd"), layer_titles=["L1", "L2", "L3"])
    grid = _plot_axes(fig)
    assert len(grid) == 3 * 2
    with_images = [ax for ax in grid if ax.images]
    assert len(with_images) == 5  # last layer has a single head; its second cell is hidden
    assert not grid[5].axison
    assert grid[2].get_title() == "L2, head 1"
    np.testing.assert_allclose(grid[0].images[0].get_array(), layers[0][0])


def test_attention_maps_bad_shape():
    with pytest.raises(ValueError, match=r"attentions\[0\].*\(2, 3, 4\)"):
        plot_attention_maps([np.ones((2, 3, 4))])


# --------------------------------------------------------------------------- curves
def test_convergence_log_scale_scalars_and_band():
    fig = plot_convergence([8, 16, 32], [0.1, -0.05, 0.025], label="IG")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.1, 0.05, 0.025])
    assert ax.lines[0].get_marker() == "o"
    assert not ax.collections  # scalars: no band

    per_sample = [np.array([0.1, -0.3]), torch.tensor([0.05, 0.15])]
    plot_convergence([10, 100], per_sample, ax=ax, label="DeepLift")
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.2, 0.1])
    assert len(ax.collections) == 1  # min/max band
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["IG", "DeepLift"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "10", "16", "32", "100"]


def test_convergence_length_mismatch():
    with pytest.raises(ValueError, match=r"length 3.*length 2"):
        plot_convergence([8, 16, 32], [0.1, 0.2])


def test_deletion_curves_legend_has_auc():
    fractions = [0.0, 0.5, 1.0]
    curves = {"IG": [0.9, 0.3, 0.1], "random": np.array([0.9, 0.7, 0.1])}
    fig = plot_deletion_curves(fractions, curves, aucs={"IG": 0.1234})
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["IG (AUC = 0.123)", "random (AUC = 0.600)"]  # random computed by trapezoid
    assert len(ax.lines) == 2
    assert "lower" in ax.get_title()
    assert "higher" in plot_deletion_curves(fractions, curves, kind="insertion").axes[0].get_title()


def test_deletion_curves_errors():
    with pytest.raises(ValueError, match=r"length 3.*'IG'.*length 2"):
        plot_deletion_curves([0.0, 0.5, 1.0], {"IG": [0.9, 0.1]})
    with pytest.raises(ValueError, match="kind"):
        plot_deletion_curves([0.0, 1.0], {"IG": [0.9, 0.1]}, kind="removal")
