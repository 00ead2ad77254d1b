"""Widgets, headless: change values and check what the handlers produced."""

import numpy as np
import pytest
from traitlets import TraitError

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


def test_unsupported_methods_are_not_offered_and_say_why(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(ForwardOnlyModel(demo_transformer), demo_cohort)
    assert [value for _, value in explorer.method.options] == ["rollout", "occlusion"]  # forward passes only
    assert explorer.explanation.method == "rollout"
    note = explorer.unsupported.value
    assert "Chefer relevance: needs attention gradients" in note and "only AttentionInterpretable" in note
    assert "Integrated Gradients: " in note and "get_embedding_model" in note and "DeepLIFT: " in note
    with pytest.raises(TraitError):
        explorer.method.value = "chefer"
    assert ExplanationExplorer(demo_transformer, demo_cohort).unsupported.value == ""


def test_model_supporting_no_method_is_a_clear_error(flat_mlp, demo_cohort):
    with pytest.raises(TypeError, match="MLP supports none of .*rollout.*needs attention maps"):
        ExplanationExplorer(flat_mlp, demo_cohort, methods=("rollout", "chefer"))


def test_one_logit_probability_reads_as_label_1(demo_transformer, demo_cohort):
    from ehrexplain.evaluation.perturbation import predict

    explorer = ExplanationExplorer(demo_transformer, demo_cohort, index=5)
    assert demo_transformer.get_output_size() == 1
    out = demo_transformer(**demo_cohort.batch([5]))
    p_label_1 = float(out["y_prob"].detach().reshape(-1)[0])
    assert f"p(label = 1) = {p_label_1:.2f}" in explorer.message.value
    assert "class 0" not in explorer.message.value
    assert float(predict(demo_transformer, demo_cohort.batch([5]))[0][0]) == pytest.approx(p_label_1)


def test_multiclass_targets_are_named_by_label(multiclass_transformer, multiclass_dataset):
    from ehrexplain.viz.method_choices import label_name

    vocab = multiclass_dataset.output_processors["label"].label_vocab
    names = {i: raw for raw, i in vocab.items()}
    assert [label_name(multiclass_transformer, c) for c in range(3)] == [f"label = {names[c]}" for c in range(3)]


def test_errors_are_messages_without_a_broken_image(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort)
    assert explorer.image.layout.display is None and explorer.image.value
    explorer.patient.value = 1000
    assert explorer.image.layout.display == "none" and explorer.image.value == b""
    explorer.patient.value = 1
    assert explorer.image.layout.display is None and explorer.image.value


def test_runtime_error_is_shown_not_raised(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort)

    def fails(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    explorer.explain = fails
    explorer.patient.value = 3
    assert "<b>RuntimeError:</b> CUDA out of memory (simulated)" in explorer.message.value
    assert explorer.image.layout.display == "none"


def test_dashboard_compares_all_methods(demo_transformer, demo_cohort):
    import pandas as pd

    metrics = pd.DataFrame({"comprehensiveness": [0.1, 0.2]}, index=pd.Index(["rollout", "deeplift"], name="method"))
    dashboard = ComparisonDashboard(demo_transformer, demo_cohort, metrics=metrics)
    assert set(dashboard.explanations) == {"rollout", "chefer", "integrated_gradients", "deeplift", "occlusion"}
    assert len([ax for ax in dashboard.figure.axes if ax.patches]) == 5
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


@pytest.mark.parametrize("kind", ["explorer", "dashboard", "layers"])
def test_display_data_carries_a_static_view(kind, demo_transformer, demo_cohort):
    """Without a widget manager (no kernel, untrusted, nbconvert) the current figure still shows."""
    import base64

    make = {
        "explorer": lambda: ExplanationExplorer(demo_transformer, demo_cohort, index=2),
        "dashboard": lambda: ComparisonDashboard(demo_transformer, demo_cohort, index=2),
        "layers": lambda: AttentionLayersExplorer(demo_transformer, demo_cohort, index=2),
    }
    view = make[kind]()
    bundle = view._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == view.model_id
    assert base64.b64decode(bundle["image/png"]) == view.image.value
    assert bundle["image/png"] in bundle["text/html"]  # the figure, inline, in the HTML view
    assert view.message.value in bundle["text/html"] and "patient: 2" in bundle["text/html"]
    assert "children=" not in bundle["text/plain"]


def test_static_view_follows_the_current_state(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort)
    before = explorer._repr_mimebundle_()
    explorer.method.value = "deeplift"
    after = explorer._repr_mimebundle_()
    assert after["image/png"] != before["image/png"] and "method: DeepLIFT" in after["text/html"]
    assert "IG steps" not in after["text/html"]  # hidden controls stay hidden
    explorer.patient.value = 1000
    broken = explorer._repr_mimebundle_()
    assert "image/png" not in broken and "out of range" in broken["text/html"] and "<img" not in broken["text/html"]


def test_explorer_labels_carry_the_cohorts_code_names_and_the_title_names_the_patient(demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort, index=5)
    ticks = [t.get_text().replace("\n", " ") for t in explorer.figure.axes[0].get_yticklabels()]
    shown = [explorer.explanation.codes[i] for i in explorer.shown]
    assert len(ticks) == len(shown) > 0
    for code in shown:
        assert any(f"{code} — {demo_cohort.code_names[code]}" in tick for tick in ticks), (code, ticks)
    assert explorer.figure.axes[0].get_title() == "Patient 5: Attention Rollout"
    name = demo_cohort.code_names[shown[0]]
    explorer.search.value = name[2:].upper()  # search finds codes by their name too
    assert shown[0] in [explorer.explanation.codes[i] for i in explorer.shown]
