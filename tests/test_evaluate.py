"""Faithfulness metrics and sanity checks: hand-made answers, trained models, bad input."""

import math

import pandas as pd
import pytest
import torch

from ehrexplain.evaluation.metrics import (
    area_under_curve,
    compare,
    comprehensiveness,
    deletion_curve,
    insertion_curve,
    method_agreement,
    randomization_check,
    rank_correlation,
    signal_recovery,
    sufficiency,
)
from ehrexplain.methods._base import Interpreter

KEYS = ("conditions", "procedures")


def real(batch):
    return {key: (batch[key] != 0).int() for key in KEYS}


def prob(model, batch):
    with torch.no_grad():
        return model(**batch)["y_prob"][:, 0].double()


def leave_one_out(model, batch):
    """True importance of each real token: p(x) - p(x with that token set to padding)."""
    full, scores = prob(model, batch), {}
    for key in KEYS:
        scores[key] = torch.zeros(batch[key].shape, dtype=torch.float64)
        for pos in range(batch[key].shape[1]):
            edited = {**batch, key: batch[key].clone()}
            edited[key][:, pos] = 0
            scores[key][:, pos] = (full - prob(model, edited)) * (batch[key][:, pos] != 0)
    return scores


@pytest.fixture(scope="module")
def loo(transformer, flat_batch):
    return leave_one_out(transformer, flat_batch)


class PositionOnly(Interpreter):
    """A fake method: the first token is always most important, whatever the model."""

    def attribute(self, target_class_idx=None, **data):
        return {key: -torch.arange(data[key].shape[1], dtype=torch.float32).expand(data[key].shape) for key in KEYS}


# --- hand-made answers ------------------------------------------------------------------


def test_perfect_and_reversed_attributions_recover_ground_truth():
    truth = torch.tensor([[1, 0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0]])
    perfect = signal_recovery(truth.double(), truth, mask)
    assert perfect["auroc"] == 1.0 and perfect["precision_at_k"] == 1.0
    reversed_ = signal_recovery(-truth.double(), truth, mask)
    assert reversed_["auroc"] == 0.0 and reversed_["precision_at_k"] == 0.0
    assert signal_recovery(-truth.double(), truth, mask, use_absolute=True)["auroc"] == 1.0


def test_recovery_skips_samples_without_positives_and_averages_ties():
    truth = torch.tensor([[1, 0, 0], [0, 0, 0]])
    result = signal_recovery(torch.tensor([[1.0, 1.0, 0.0], [3.0, 2.0, 1.0]]), truth, torch.ones(2, 3))
    assert math.isnan(result["auroc_per_sample"][1]) and math.isnan(result["precision_per_sample"][1])
    assert result["auroc"] == 0.75  # the tie with a negative counts one half


def test_per_key_recovery_ignores_scales_between_keys():
    """Perfect within each key, but the code-free key scores higher: only per-key ranking says 1."""
    truth = {"codes": torch.tensor([[1, 0, 0]]), "procedures": torch.tensor([[0, 0]])}
    scores = {"codes": torch.tensor([[0.3, 0.2, 0.1]]), "procedures": torch.tensor([[0.9, 0.8]])}
    mask = {key: torch.ones_like(value) for key, value in truth.items()}
    across = signal_recovery(scores, truth, mask)
    assert across["auroc"] == 0.5 and across["precision_at_k"] == 0.0  # beaten by both procedures
    within = signal_recovery(scores, truth, mask, per_key=True)
    assert within["auroc"] == 1.0 and within["precision_at_k"] == 1.0  # procedures have no driver: skipped


def test_spearman_of_self_reverse_ties_and_padding():
    x = torch.tensor([[0.3, 1.0, 2.0, 9.0, 5.0]])
    mask = torch.ones(1, 5)
    assert rank_correlation(x, x, mask).item() == pytest.approx(1.0)
    assert rank_correlation(x, -x, mask).item() == pytest.approx(-1.0)
    ties = rank_correlation(torch.tensor([[1.0, 1.0, 2.0]]), torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3))
    assert ties.item() == pytest.approx(math.sqrt(3) / 2)
    # The padding entry (huge in b) would break the perfect correlation if it counted.
    b = torch.tensor([[1.0, 2.0, 3.0, -100.0]])
    assert rank_correlation(torch.tensor([[1.0, 2.0, 3.0, 50.0]]), b, torch.tensor([[1, 1, 1, 0]])).item() == 1.0


def test_area_under_curve_is_the_trapezoid():
    fractions = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    curve = torch.tensor([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert area_under_curve(fractions, curve).tolist() == [0.5, 0.25]


def test_area_under_curve_names_mismatched_shapes():
    with pytest.raises(ValueError, match=r"curve \[n_points, B\] and fractions \[n_points\]; got curve \(1, 2\) and fractions \(2,\)"):
        area_under_curve(torch.tensor([0.0, 1.0]), torch.tensor([[1.0, 0.0]]))


def test_method_agreement_is_symmetric_with_unit_diagonal(transformer, flat_batch, loo):
    methods = {"loo": loo, "noise": {k: torch.rand(flat_batch[k].shape) for k in KEYS}, "negated": {k: -v for k, v in loo.items()}}
    table = method_agreement(methods, real(flat_batch))
    assert list(table.index) == list(table.columns) == list(methods)
    assert (table.values == table.values.T).all() and (table.values.diagonal() == 1.0).all()
    assert table.loc["loo", "negated"] < 0


# --- removal metrics on the trained transformer -----------------------------------------


def test_deleting_everything_gives_the_empty_input_probability(transformer, flat_batch, loo):
    fractions, curve = deletion_curve(transformer, flat_batch, loo, n_points=5)
    empty = prob(transformer, {**flat_batch, **{k: torch.zeros_like(flat_batch[k]) for k in KEYS}})
    assert fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and curve.shape == (5, 8)
    torch.testing.assert_close(curve[-1], empty)
    torch.testing.assert_close(curve[0], prob(transformer, flat_batch))
    _, inserted = insertion_curve(transformer, flat_batch, loo, n_points=5)
    torch.testing.assert_close(inserted[0], empty)
    torch.testing.assert_close(inserted[-1], curve[0])


def test_percentage_order_does_not_matter(transformer, flat_batch, loo):
    a = comprehensiveness(transformer, flat_batch, loo, percentages=(1, 5, 10))
    b = comprehensiveness(transformer, flat_batch, loo, percentages=(10, 1, 5))
    assert torch.equal(a, b)
    assert torch.equal(sufficiency(transformer, flat_batch, loo, (50, 20)), sufficiency(transformer, flat_batch, loo, (20, 50)))


def test_true_importance_beats_its_negation(transformer, flat_batch, loo):
    negated = {k: -v for k, v in loo.items()}
    assert comprehensiveness(transformer, flat_batch, loo).mean() > comprehensiveness(transformer, flat_batch, negated).mean()
    assert sufficiency(transformer, flat_batch, loo).mean() < sufficiency(transformer, flat_batch, negated).mean()
    good = area_under_curve(*deletion_curve(transformer, flat_batch, loo))
    bad = area_under_curve(*deletion_curve(transformer, flat_batch, negated))
    assert good.mean() < bad.mean()
    assert area_under_curve(*insertion_curve(transformer, flat_batch, loo)).mean() > area_under_curve(
        *insertion_curve(transformer, flat_batch, negated)
    ).mean()


def test_multiclass_scores_the_predicted_class(multiclass_transformer, multiclass_batch):
    with torch.no_grad():
        y_prob = multiclass_transformer(**multiclass_batch)["y_prob"]
    scores = {k: torch.rand(multiclass_batch[k].shape) for k in KEYS}
    _, curve = deletion_curve(multiclass_transformer, multiclass_batch, scores, n_points=3)
    torch.testing.assert_close(curve[0], y_prob.max(-1).values.double())


def test_nested_features_are_ranked_per_code(stage_attention_net, nested_batch):
    scores = {"visits": torch.rand(nested_batch["visits"].shape)}
    fractions, curve = deletion_curve(stage_attention_net, nested_batch, scores, n_points=4)
    assert curve.shape == (4, nested_batch["visits"].shape[0]) and torch.isfinite(curve).all()


def test_models_that_fail_on_empty_input_keep_one_token(flat_mlp, flat_batch):
    scores = {k: torch.rand(flat_batch[k].shape) for k in KEYS}
    with pytest.warns(RuntimeWarning, match="least important token"):
        _, curve = deletion_curve(flat_mlp, flat_batch, scores, n_points=3)
    assert torch.isfinite(curve).all()


# --- randomization sanity check ---------------------------------------------------------


def test_randomization_leaves_model_untouched_and_flags_model_independent_method(transformer, flat_batch):
    before = {k: v.clone() for k, v in transformer.state_dict().items()}
    result = randomization_check(transformer, PositionOnly(transformer), flat_batch, seed=0)
    assert result.mean_spearman == pytest.approx(1.0) and result.passed is False
    after = transformer.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not transformer.training


def test_randomization_changes_chefer_relevance(transformer, flat_batch):
    result = randomization_check(transformer, "chefer", flat_batch, seed=1)
    assert result.per_sample.shape == (8,) and result.mean_spearman < 0.99


# --- compare and bad input --------------------------------------------------------------


def test_compare_gives_one_finite_row_per_method(transformer, flat_dataset):
    from pyhealth.datasets import get_dataloader

    loader = get_dataloader(flat_dataset, batch_size=8, shuffle=False)
    c01 = flat_dataset.input_processors["conditions"].code_vocab["C01"]
    truth = lambda b: {"conditions": (b["conditions"] == c01).int(), "procedures": torch.zeros_like(b["procedures"])}  # noqa: E731
    methods = ["rollout", "chefer", "integrated_gradients", "deeplift"]
    table = compare(
        transformer, loader, methods, ground_truth=truth, max_batches=2, progress=False,
        method_options={"integrated_gradients": {"steps": 10}},
    )
    assert isinstance(table, pd.DataFrame) and list(table.index) == methods and table.index.name == "method"
    magnitude = compare(
        transformer, loader, methods, ground_truth=truth, max_batches=2, progress=False, use_absolute=True,
        method_options={"integrated_gradients": {"steps": 10}},
    )
    for name in methods:  # non-negative scores rank the same either way
        if name in ("rollout", "chefer"):
            assert magnitude.loc[name, "recovery_auroc"] == pytest.approx(table.loc[name, "recovery_auroc"])
    assert magnitude[["comprehensiveness", "sufficiency"]].equals(table[["comprehensiveness", "sufficiency"]])
    assert list(table.columns) == [
        "comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc",
        "recovery_auroc", "precision_at_k", "randomization_spearman", "randomization_passed", "seconds",
    ]
    numbers = table.drop(columns="randomization_passed")
    assert torch.isfinite(torch.tensor(numbers.values, dtype=torch.float64)).all(), table
    assert table["randomization_passed"].tolist() == (table["randomization_spearman"] < 0.5).tolist()
    assert (table["seconds"] > 0).all()


def test_bad_inputs_raise_clear_errors(transformer, flat_batch, flat_mlp, flat_dataset):
    from pyhealth.datasets import get_dataloader

    loader = get_dataloader(flat_dataset, batch_size=8, shuffle=False)
    with pytest.raises(ValueError, match="unknown method.*'rollout'"):
        compare(transformer, loader, ["rollout", "lime"], progress=False)
    with pytest.raises(ValueError, match="no batches"):
        compare(transformer, [], ["rollout"], progress=False)
    with pytest.raises(TypeError):
        compare(flat_mlp, loader, ["rollout"], progress=False, max_batches=1)
    bad = {"conditions": torch.zeros(8, 3), "procedures": torch.zeros(flat_batch["procedures"].shape)}
    with pytest.raises(ValueError, match=r"'conditions'.*\(8, 3\).*\(8, \d+\)"):
        comprehensiveness(transformer, flat_batch, bad)
    good = {k: torch.rand(flat_batch[k].shape) for k in KEYS}
    for percentages in [(0, 10), (10, 101), (-5,), ()]:
        with pytest.raises(ValueError, match="percentages"):
            sufficiency(transformer, flat_batch, good, percentages)


def test_compare_accepts_built_interpreters(transformer, flat_dataset):
    from pyhealth.datasets import get_dataloader

    loader = get_dataloader(flat_dataset, batch_size=8, shuffle=False)
    table = compare(transformer, loader, [PositionOnly(transformer)], max_batches=1, progress=False, n_points=3)
    assert list(table.index) == ["PositionOnly"] and "recovery_auroc" not in table.columns
    assert table.loc["PositionOnly", "randomization_spearman"] == pytest.approx(1.0)
    assert not table.loc["PositionOnly", "randomization_passed"]  # ignores the weights: flagged


def test_gradient_methods_recover_planted_codes_better_than_random(held_out_demo):
    """IG on both demo models and DeepLIFT on the MLP (where it is exact) find the planted codes.

    DeepLIFT on the Transformer is left out on purpose: its gradient fallback through
    softmax and layer norm leaves it near chance (notebook 07 shows this).
    """
    from ehrexplain.core.batch import unpack_batch
    from ehrexplain.methods import DeepLift, IntegratedGradients

    demo = held_out_demo
    batch = demo.cohort.batch(demo.test)
    masks = unpack_batch(demo.transformer, batch).masks
    truth = {key: value for key, value in demo.cohort.ground_truth(batch).items() if key in masks}
    generator = torch.Generator().manual_seed(0)
    chance = signal_recovery({k: torch.rand(batch[k].shape, generator=generator) for k in masks}, truth, masks)
    explainers = {
        "IG, Transformer": IntegratedGradients(demo.transformer, steps=16, alpha_rule="gauss_legendre"),
        "IG, MLP": IntegratedGradients(demo.mlp, steps=16, alpha_rule="gauss_legendre"),
        "DeepLIFT, MLP": DeepLift(demo.mlp),
    }
    for name, explainer in explainers.items():
        scores = explainer.attribute(**batch)
        recovered = signal_recovery({k: scores[k] for k in masks}, truth, masks)
        assert recovered["auroc"] > chance["auroc"] + 0.15, (name, recovered["auroc"], chance["auroc"])
        assert recovered["precision_at_k"] > chance["precision_at_k"] + 0.2, (name, recovered, chance)
