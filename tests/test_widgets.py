"""Widgets, headless: change values and check what the handlers produced."""

import numpy as np
import pytest

from ehrexplain.testing import ForwardOnlyModel
from ehrexplain.viz.widgets import AttentionLayersExplorer, ComparisonDashboard, ExplanationExplorer


def bar_widths(figure):
    return sorted(round(float(p.get_width()), 6) for p in figure.axes[0].patches)


def test_explorer_follows_patient_and_method(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort)
    assert explorer.explanation.method == "rollout" and explorer.explanation.index == 0
    first_png = explorer.image.value
    explorer.patient.value = 7
    assert explorer.explanation.index == 7
    assert len(explorer.figure.axes[0].patches) == len(explorer.explanation.labels)
    assert explorer.image.value != first_png
    explorer.method.value = "integrated_gradients"
    assert explorer.explanation.method == "integrated_gradients"
    assert "completeness delta" in explorer.message.value
    assert bar_widths(explorer.figure) == sorted(np.round(explorer.explanation.scores, 6).tolist())
    assert 'id="ehrexplain-integrated_gradients-7"' in explorer.heatmap.value


def test_explorer_shows_only_relevant_options(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort)
    assert explorer.steps.layout.display == "none" and explorer.head_fusion.layout.display is None
    explorer.method.value = "integrated_gradients"
    assert explorer.steps.layout.display is None and explorer.head_fusion.layout.display == "none"


def test_explorer_options_change_the_result(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort, index=3)
    explorer.method.value = "integrated_gradients"
    explorer.steps.value = 4
    coarse = explorer.explanation.delta
    explorer.steps.value = 128
    assert abs(explorer.explanation.delta) < abs(coarse)
    explorer.method.value = "rollout"
    before = explorer.explanation.scores
    explorer.discard_ratio.value = 0.5
    assert not np.allclose(before, explorer.explanation.scores)


def test_explorer_cache_reuses_results(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort)
    first = explorer.explanation
    explorer.patient.value = 2
    explorer.patient.value = 0
    assert explorer.explanation is first


def test_out_of_range_patient_is_a_message(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort)
    explorer.patient.value = 1000
    assert "out of range" in explorer.message.value and "0..119" in explorer.message.value
    assert "Traceback" not in explorer.message.value


def test_unsupported_method_is_a_message(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(ForwardOnlyModel(demo_transformer), demo_cohort)
    assert explorer.explanation.method == "rollout"  # rollout needs forward attention only
    explorer.method.value = "chefer"
    assert explorer.message.value.startswith('<div style="color:#b00020"><b>TypeError:</b>')
    assert "CheferRelevance" in explorer.message.value and "Traceback" not in explorer.message.value
    explorer.method.value = "integrated_gradients"
    assert "forward_from_embedding" in explorer.message.value


def test_dashboard_compares_all_methods(demo_transformer, demo_cohort):
    import pandas as pd

    metrics = pd.DataFrame({"comprehensiveness": [0.1, 0.2]}, index=pd.Index(["rollout", "deeplift"], name="method"))
    dashboard = ComparisonDashboard(demo_transformer, demo_cohort, metrics=metrics)
    assert set(dashboard.explanations) == {"rollout", "chefer", "integrated_gradients", "deeplift"}
    assert len([ax for ax in dashboard.figure.axes if ax.patches]) == 4
    assert dashboard.table.value.count("<tr") == 3 and "deeplift" in dashboard.table.value
    dashboard.patient.value = -1
    assert "out of range" in dashboard.message.value


def test_attention_layers_explorer_builds_up_rollout(demo_transformer, demo_cohort):
    explorer = AttentionLayersExplorer(demo_transformer, demo_cohort, feature_key="conditions")
    assert explorer.layer.max == 2 and len(explorer.head.options) == 3
    assert "1.000 .. 1.000" in explorer.message.value
    one_layer = explorer.figure.axes[1].images[0].get_array().copy()
    explorer.layer.value = 2
    two_layers = explorer.figure.axes[1].images[0].get_array()
    assert not np.allclose(one_layer, two_layers)
    explorer.head.value = 1
    head = explorer.figure.axes[0].images[0].get_array()
    n = head.shape[0]
    np.testing.assert_allclose(head, explorer.maps[1][1][:n, :n].numpy(), atol=1e-6)


def test_explorer_warns_when_scores_miss_the_gap(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort, index=3)
    explorer.method.value = "integrated_gradients"
    explorer.steps.value = 64
    assert explorer.explanation.relative_delta < 0.1 and "The scores miss" not in explorer.message.value
    explorer.baseline.value = "padding"
    share = explorer.explanation.relative_delta
    assert share > 0.1, "the all-padding baseline should leave a visible completeness gap on the Transformer"
    assert f"The scores miss {share:.0%}" in explorer.message.value and "all-padding baseline" in explorer.message.value
