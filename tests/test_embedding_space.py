"""Input checks shared by Integrated Gradients and DeepLift: each error names the problem."""

import pytest
import torch
from conftest import assert_restored
from torch import nn

from ehrexplain.methods import DeepLift, IntegratedGradients
from ehrexplain.testing import FunctionModel

METHODS = [IntegratedGradients, DeepLift]


@pytest.fixture(params=METHODS, ids=lambda m: m.__name__)
def method(request):
    return request.param


def check_fails(method, model, batch, error, match, **options):
    model.train()
    try:
        with pytest.raises(error, match=match):
            method(model).attribute(**batch, **options)
        assert_restored(model, training_before=True)
    finally:
        model.eval()


def test_baseline_with_wrong_shape(method, transformer, flat_batch):
    wrong = {"conditions": torch.ones(2, 3, dtype=torch.long)}
    check_fails(method, transformer, flat_batch, ValueError, r"baseline for 'conditions' has shape \(2, 3\)", baseline=wrong)


def test_baseline_with_unknown_key(method, transformer, flat_batch):
    check_fails(method, transformer, flat_batch, KeyError, "unknown feature key 'drugs'", baseline={"drugs": torch.ones(1)})


def test_missing_feature_key(method, transformer, flat_batch):
    batch = {k: v for k, v in flat_batch.items() if k != "procedures"}
    check_fails(method, transformer, batch, KeyError, r"missing feature key\(s\) \['procedures'\]")


def test_target_out_of_range(method, multiclass_transformer, multiclass_batch):
    check_fails(method, multiclass_transformer, multiclass_batch, ValueError, "out of range for this 3-class model",
                target_class_idx=5)  # fmt: skip


def test_binary_model_accepts_its_two_classes_only(method, transformer, flat_batch):
    """A binary model has one logit: classes 0 and 1 both explain it (as in PyHealth); 2 is an error."""
    interpreter = method(transformer)
    explained = [interpreter.attribute(**flat_batch, target_class_idx=c)["conditions"] for c in (None, 0, 1)]
    torch.testing.assert_close(explained[0], explained[1])
    torch.testing.assert_close(explained[0], explained[2])
    check_fails(method, transformer, flat_batch, ValueError, r"out of range for this binary \(one logit",
                target_class_idx=2)  # fmt: skip


def test_nan_inputs(method, lab_mlp, lab_batch):
    batch = dict(lab_batch)
    batch["labs"] = lab_batch["labs"].clone()
    batch["labs"][0, 1] = float("nan")
    check_fails(method, lab_mlp, batch, ValueError, "feature 'labs' contains NaN")


def test_model_without_embedding_methods(method):
    toy = FunctionModel(nn.Linear(3, 1))
    with pytest.raises(TypeError, match=r"needs FunctionModel to embed its token features with a layer it exposes"):
        method(toy, use_embeddings=True)


def test_token_ids_cannot_be_interpolated(method, transformer, flat_batch):
    model = transformer
    with pytest.raises(ValueError, match=r"features \['conditions', 'procedures'\] are token ids"):
        method(model, use_embeddings=False).attribute(**flat_batch)
    assert_restored(model, training_before=False)


def test_baseline_with_nan(method, lab_mlp, lab_batch):
    baseline = {"labs": torch.full_like(lab_batch["labs"], float("nan"))}
    check_fails(method, lab_mlp, lab_batch, ValueError, "baseline for 'labs' contains NaN", baseline=baseline)


def test_model_limits_are_named(method):
    """PyHealth's MLP.forward_from_embedding cannot take nested codes: say which model method failed, on what.

    Its own forward (which flattens visits x codes before embedding) runs with substituted embeddings.
    """
    from ehrexplain.data.synthetic import make_cohort, train_demo_model
    from ehrexplain.methods import _embedding_space

    cohort = make_cohort(n_patients=30, shape="nested", seed=0)
    mlp = train_demo_model(cohort, kind="mlp", seed=0, epochs=1)
    batch = cohort.batch(range(4))
    space = _embedding_space.AttributionSpace.build(mlp, batch, None, True)
    space.fast_path = False
    assert torch.isfinite(space.forward(space.inputs, space.rows)).all()
    mlp.train()
    try:
        with pytest.raises(ValueError, match=r"MLP\.forward_from_embedding failed on the embedded inputs \{'visits': \(4, \d+, \d+, \d+\)\}"):
            method(mlp).attribute(**batch)
        assert_restored(mlp, training_before=True)
    finally:
        mlp.eval()
