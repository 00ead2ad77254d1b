"""Tests for ehrexplain.data.synthetic: planted rules, cohorts, ground truth, demo models."""

import dataclasses

import pytest
import torch

from ehrexplain.data.synthetic import CODE_NAMES, PlantedRule, auroc, make_cohort, model_auroc, train_demo_model


@pytest.fixture(scope="module")
def cohort():
    return make_cohort(n_patients=300, seed=0)


@pytest.fixture(scope="module")
def nested_cohort():
    return make_cohort(n_patients=80, shape="nested", seed=3)



def test_same_seed_same_samples_and_different_seed_differs():
    assert make_cohort(40, seed=5).samples == make_cohort(40, seed=5).samples
    assert make_cohort(40, seed=5).samples != make_cohort(40, seed=6).samples


def test_rule_score_and_drivers():
    rule = PlantedRule()
    codes = {"E11.9", "C09AA02", "C03DA01", "C10AA05", "I10", "E78.5"}
    assert rule.score(codes) == pytest.approx(1.5 + 2.0 - 1.5)
    assert rule.drivers(codes) == {"E11.9", "C09AA02", "C03DA01", "C10AA05"}
    # One interaction drug alone drives nothing; confounders never do.
    assert rule.drivers({"C09AA02", "I10", "E78.5"}) == set()
    assert all(code in CODE_NAMES for code in rule.planted)


def test_noise_free_labels_follow_the_rule():
    rule = PlantedRule(noise=0.0)
    cohort = make_cohort(200, rule=rule, seed=2)
    for i, sample in enumerate(cohort.samples):
        assert sample["label"] == int(rule.score(cohort.codes(i)) > cohort.threshold)


def test_changing_the_rule_changes_labels():
    base = make_cohort(200, rule=PlantedRule(noise=0.0), seed=2)
    other = PlantedRule(noise=0.0, risk_codes={"J44.9": 2.0, "I48.91": 1.0, "F32.9": 1.5})
    changed = make_cohort(200, rule=other, seed=2)
    assert [s["label"] for s in base.samples] != [s["label"] for s in changed.samples]


@pytest.mark.parametrize("prevalence", [0.1, 0.3, 0.5])
def test_prevalence_near_target(prevalence):
    cohort = make_cohort(200, rule=PlantedRule(prevalence=prevalence), seed=1)
    assert cohort.prevalence == pytest.approx(prevalence, abs=0.03)


def test_confounders_correlate_with_label_but_are_not_drivers(cohort):
    rule = cohort.rule
    with_conf = [s["label"] for i, s in enumerate(cohort.samples) if cohort.codes(i) & set(rule.confounders)]
    without = [s["label"] for i, s in enumerate(cohort.samples) if not cohort.codes(i) & set(rule.confounders)]
    assert sum(with_conf) / len(with_conf) > sum(without) / len(without)


def test_ground_truth_marks_exactly_the_drivers(cohort):
    indices = list(range(40))
    batch = cohort.batch(indices)
    truth = cohort.ground_truth(batch)
    assert set(truth) == set(cohort.feature_keys)
    for key in cohort.feature_keys:
        assert truth[key].shape == batch[key].shape
        assert truth[key][batch[key] == 0].sum() == 0  # padding never marked
        assert set(truth[key].unique().tolist()) <= {0, 1}
    for row, i in enumerate(indices):
        drivers = cohort.rule.drivers(cohort.codes(i))
        marked = set()
        for key in cohort.feature_keys:
            marked |= set(cohort.decode(key, batch[key][row][truth[key][row].bool()]))
            assert cohort.decode(key, batch[key][row]) == cohort.samples[i][key]
        assert marked == drivers
        assert not marked & set(cohort.rule.confounders)


def test_batch_matches_dataloader(cohort):
    loader_batch = next(iter(cohort.loader(batch_size=8)))
    batch = cohort.batch(range(8))
    assert batch["patient_id"] == loader_batch["patient_id"]
    for key in cohort.feature_keys:
        assert torch.equal(batch[key], loader_batch[key])


def test_nested_shape_and_ground_truth(nested_cohort):
    batch = nested_cohort.batch([0, 1, 2, 3])
    assert nested_cohort.feature_keys == ["visits"]
    assert batch["visits"].dim() == 3
    truth = nested_cohort.ground_truth(batch)["visits"]
    assert truth.shape == batch["visits"].shape
    assert truth[batch["visits"] == 0].sum() == 0
    for row in range(4):
        marked = set(nested_cohort.decode("visits", batch["visits"][row][truth[row].bool()]))
        assert marked == nested_cohort.rule.drivers(nested_cohort.codes(row))
    assert all(1 <= len(s["visits"]) <= 6 for s in nested_cohort.samples)


def test_labs_are_numeric_and_correlate_with_conditions():
    cohort = make_cohort(150, with_labs=True, seed=4)
    batch = cohort.batch(range(150))
    assert batch["labs"].is_floating_point() and batch["labs"].shape == (150, 4)
    ckd = torch.tensor(["N18.3" in cohort.codes(i) for i in range(150)])
    assert batch["labs"][ckd, 0].mean() > batch["labs"][~ckd, 0].mean() + 0.4
    assert cohort.ground_truth(batch)["labs"].sum() == 0  # labs never enter the rule


def test_split_is_disjoint_and_complete(cohort):
    train, test = cohort.split(0.25, seed=1)
    assert sorted(train + test) == list(range(300)) and not set(train) & set(test)


def test_auroc_rank_formula():
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_demo_models_generalise(held_out_demo):
    demo = held_out_demo
    assert model_auroc(demo.transformer, demo.cohort, demo.test) >= 0.75
    assert model_auroc(demo.mlp, demo.cohort, demo.test) >= 0.75


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": "deep"}, "shape must be one of"),
        ({"n_patients": 0}, "n_patients must be an integer >= 1"),
        ({"kind": "rnn"}, "kind must be one of"),
    ],
)
def test_bad_input_raises(cohort, kwargs, message):
    with pytest.raises(ValueError, match=message):
        if "kind" in kwargs:
            train_demo_model(cohort, **kwargs)
        else:
            make_cohort(**kwargs)


@pytest.mark.parametrize("prevalence", [0.0, 1.0, -0.2, 1.5])
def test_bad_prevalence_raises(prevalence):
    with pytest.raises(ValueError, match=r"prevalence must be in \(0, 1\)"):
        dataclasses.replace(PlantedRule(), prevalence=prevalence)
