"""One patient's explanation: codes aligned with scores and ground truth, clear errors."""

import numpy as np
import pytest
import torch

from ehrexplain.evaluation.explanation import explain_patient, named_baseline


def test_codes_scores_and_truth_line_up(demo_transformer, demo_cohort):
    explanation = explain_patient(demo_transformer, demo_cohort, 5, "integrated_gradients", steps=16)
    sample = demo_cohort.samples[5]
    expected = [f"{k}: {c}" for k in demo_cohort.feature_keys for c in sample[k]]
    assert explanation.labels == expected
    batch = demo_cohort.batch([5])
    from ehrexplain.methods import IntegratedGradients

    direct = IntegratedGradients(demo_transformer).attribute(**batch, steps=16)
    flat = np.concatenate([direct[k][0][batch[k][0] != 0].numpy() for k in demo_cohort.feature_keys])
    np.testing.assert_allclose(explanation.scores, flat, atol=1e-6)
    drivers = demo_cohort.rule.drivers(demo_cohort.codes(5))
    assert [bool(t) for t in explanation.ground_truth] == [c in drivers for c in explanation.codes]
    assert explanation.signed and explanation.delta is not None


def test_rollout_options_reach_the_constructor(demo_transformer, demo_cohort):
    mean = explain_patient(demo_transformer, demo_cohort, 0, "rollout")
    maximum = explain_patient(demo_transformer, demo_cohort, 0, "rollout", head_fusion="max")
    assert not np.allclose(mean.scores, maximum.scores)
    assert mean.delta is None and not mean.signed


def test_padding_baseline_changes_gradient_methods(demo_transformer, demo_cohort):
    unk = explain_patient(demo_transformer, demo_cohort, 0, "deeplift")
    pad = explain_patient(demo_transformer, demo_cohort, 0, "deeplift", baseline="padding")
    assert not np.allclose(unk.scores, pad.scores)
    baseline = named_baseline(demo_cohort.batch([0]), demo_transformer, "padding")
    assert all(torch.equal(v, torch.zeros_like(v)) for v in baseline.values())


def test_bad_requests(demo_transformer, demo_cohort):
    with pytest.raises(IndexError, match=r"patient index 500 is out of range: the cohort has 120 patients \(0..119\)"):
        explain_patient(demo_transformer, demo_cohort, 500, "rollout")
    with pytest.raises(ValueError, match="unknown method 'lime'"):
        explain_patient(demo_transformer, demo_cohort, 0, "lime")
    with pytest.raises(ValueError, match="unknown baseline 'mean'"):
        explain_patient(demo_transformer, demo_cohort, 0, "integrated_gradients", baseline="mean")
