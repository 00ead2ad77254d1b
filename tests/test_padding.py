"""Padding is explained as nothing, on every model and feature type ehrexplain supports.

Integrated Gradients and DeepLIFT keep the input's own padding in the baseline,
so ``x - b = 0`` there: padding scores are exactly zero and extra padding added
by a batch never changes a patient's scores.
"""

import pytest
import torch

from ehrexplain import DeepLift, IntegratedGradients
from ehrexplain.core.batch import as_tuple

GRADIENT_METHODS = {"integrated_gradients": lambda m: IntegratedGradients(m, steps=6), "deeplift": DeepLift}
# (model fixture, batch fixture): sequence, tensor, nested-sequence and time-aware (StageNet) features.
SETUPS = [
    ("transformer", "flat_batch"),
    ("flat_mlp", "flat_batch"),
    ("lab_mlp", "lab_batch"),
    ("lab_transformer", "lab_batch"),
    ("stage_attention_net", "nested_batch"),
    ("stagenet", "stagenet_batch"),
]


@pytest.fixture
def stagenet(stagenet_and_batch):
    return stagenet_and_batch[0]


@pytest.fixture
def stagenet_batch(stagenet_and_batch):
    return stagenet_and_batch[1]


def _schema(model, key):
    return tuple(model.dataset.input_processors[key].schema())


def with_extra_padding(model, batch: dict, extra: int) -> dict:
    """``batch`` with ``extra`` padding positions appended to every sequence-like feature."""
    padded = dict(batch)
    for key in model.feature_keys:
        schema, parts = _schema(model, key), as_tuple(batch[key])
        value = parts[schema.index("value")]
        if not model.dataset.input_processors[key].is_token() and value.dim() < 3:
            continue  # one vector per patient: nothing to pad
        grown = tuple(torch.cat([p, p.new_zeros(p.shape[0], extra, *p.shape[2:])], dim=1) for p in parts)
        padded[key] = grown[0] if isinstance(batch[key], torch.Tensor) else grown
    return padded


def padding_of(model, key, batch) -> torch.Tensor:
    """Boolean mask of padding entries of the feature's value tensor."""
    value = as_tuple(batch[key])[_schema(model, key).index("value")]
    if model.dataset.input_processors[key].is_token():
        return value == 0
    if value.dim() < 3:
        return torch.zeros_like(value, dtype=torch.bool)
    return (value.abs().sum(-1, keepdim=True) == 0).expand_as(value)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("model_name, batch_name", SETUPS)
def test_padding_scores_zero_and_batch_independent(request, method, model_name, batch_name):
    model, batch = request.getfixturevalue(model_name), request.getfixturevalue(batch_name)
    explain = GRADIENT_METHODS[method](model)
    scores = explain.attribute(**batch)
    padded_batch = with_extra_padding(model, batch, extra=3)
    padded = explain.attribute(**padded_batch)
    for key in model.feature_keys:
        assert torch.isfinite(scores[key]).all()
        pad = padding_of(model, key, padded_batch)
        assert pad.any() or key == "labs"
        assert torch.equal(padded[key][pad], torch.zeros_like(padded[key][pad])), f"{key}: padding got a score"
        original = padded[key][(slice(None), slice(0, scores[key].shape[1]))]
        torch.testing.assert_close(original, scores[key], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_patient_without_codes(transformer, flat_mlp, flat_batch, method):
    empty = {**flat_batch, "conditions": flat_batch["conditions"].clone(), "procedures": flat_batch["procedures"].clone()}
    empty["conditions"][0] = 0
    empty["procedures"][0] = 0
    scores = GRADIENT_METHODS[method](transformer).attribute(**empty)
    for key, score in scores.items():
        assert torch.equal(score[0], torch.zeros_like(score[0])), key
    # PyHealth's MLP divides by the number of codes: its prediction itself is NaN, refused clearly.
    with pytest.raises(ValueError, match=r"predicts NaN or infinity for sample\(s\) \[0\], which have no data in \['conditions', 'procedures'\]"):
        GRADIENT_METHODS[method](flat_mlp).attribute(**empty)


def test_rnn_runs_through_its_own_forward_and_a_tree_ensemble_is_refused_by_name(flat_dataset, flat_batch):
    """No forward_from_embedding needed: the RNN's padding scores 0, its IG delta is small."""
    from pyhealth.models import RNN

    torch.manual_seed(0)
    rnn = RNN(dataset=flat_dataset, embedding_dim=8, hidden_dim=8)
    scores, delta = IntegratedGradients(rnn, steps=32, alpha_rule="gauss_legendre").attribute(
        **flat_batch, return_convergence_delta=True)  # fmt: skip
    for key, score in scores.items():
        assert torch.equal(score[flat_batch[key] == 0], torch.zeros_like(score[flat_batch[key] == 0])), key
    assert delta.abs().max() < 1e-4
    XGBoostModel = type("XGBoostModel", (torch.nn.Module,), {})  # stand-in: xgboost is not installed
    with pytest.raises(TypeError, match="XGBoostModel is a tree ensemble"):
        IntegratedGradients(XGBoostModel())