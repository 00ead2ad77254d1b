"""Chefer relevance: closed form on a toy, class specificity, parity with PyHealth, bad input."""

import copy

import pytest
import torch
from conftest import assert_restored, single_sample

from ehrexplain import CheferRelevance
from ehrexplain.methods.chefer import relevance_matrix
from ehrexplain.testing import OneLayerAttentionToy, StaticAttentionModel


@pytest.mark.parametrize("target", [0, 1, 2])
def test_equals_hand_computation_on_one_layer_toy(target):
    toy = OneLayerAttentionToy(seed=3)
    codes = torch.tensor([[1, 4, 2, 7], [3, 3, 9, 5]])
    attn, values = toy.attention_and_values(codes)
    # d logit_c / d A[0, j] = V[j, c]; other rows have zero gradient.
    expected = torch.eye(4)[0].expand(2, 4) + (attn[:, 0, 0, :] * values[:, :, target]).clamp(min=0)
    scores = CheferRelevance(toy).attribute(target_class_idx=target, codes=codes)["codes"]
    torch.testing.assert_close(scores, expected.detach())


def test_relevance_matrix_needs_gradients():
    attn = torch.full((1, 1, 2, 2), 0.5)
    with pytest.raises(RuntimeError, match="no attention gradient"):
        relevance_matrix([(attn, None)])


def test_class_specific(multiclass_transformer, multiclass_batch):
    chefer = CheferRelevance(multiclass_transformer)
    maps = [chefer.attribute(target_class_idx=c, **multiclass_batch)["conditions"] for c in range(3)]
    assert not torch.allclose(maps[0], maps[1], atol=1e-4)
    assert not torch.allclose(maps[1], maps[2], atol=1e-4)


def test_default_target_is_the_predicted_class(multiclass_transformer, multiclass_batch):
    chefer = CheferRelevance(multiclass_transformer)
    predicted = multiclass_transformer(**multiclass_batch)["logit"].argmax(-1)
    default = chefer.attribute(**multiclass_batch)["conditions"]
    explicit = chefer.attribute(target_class_idx=predicted, **multiclass_batch)["conditions"]
    torch.testing.assert_close(default, explicit)


@pytest.mark.parametrize("model_name, batch_name, target", [
    ("transformer", "flat_batch", None),
    ("multiclass_transformer", "multiclass_batch", 1),
    ("stage_attention_net", "nested_batch", None),
])
def test_equals_pyhealth_chefer(model_name, batch_name, target, request):
    from pyhealth.interpret.methods import CheferRelevance as PyHealthChefer

    model, batch = request.getfixturevalue(model_name), request.getfixturevalue(batch_name)
    ours = CheferRelevance(model).attribute(target_class_idx=target, **batch)
    theirs = PyHealthChefer(model).attribute(target_class_idx=target, **batch)
    model.zero_grad(set_to_none=True)  # PyHealth's backward fills parameter .grad
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key] * (batch[key] != 0), atol=1e-6, rtol=0)


def test_batch_equals_per_sample(transformer, flat_batch, stage_attention_net, nested_batch):
    for model, batch in [(transformer, flat_batch), (stage_attention_net, nested_batch)]:
        chefer = CheferRelevance(model)
        batched = chefer(**batch)
        for i in range(len(batch["label"])):
            alone = chefer(**single_sample(batch, i, model.feature_keys))
            for key, score in alone.items():
                index = (i,) + tuple(slice(0, n) for n in score.shape[1:])
                torch.testing.assert_close(batched[key][index], score[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_works_inside_no_grad_and_inference_mode(transformer, flat_batch, context):
    expected = CheferRelevance(transformer)(**flat_batch)
    with context():
        inside = CheferRelevance(transformer)(**flat_batch)
    for key in expected:
        torch.testing.assert_close(inside[key], expected[key])


def test_parameter_grads_and_mode_untouched(transformer, flat_batch):
    params = list(transformer.parameters())
    sentinel = torch.full_like(params[0], 7.0)
    params[0].grad = sentinel
    before = [p.grad for p in params]
    transformer.train()
    try:
        CheferRelevance(transformer)(**flat_batch)
        assert torch.all(sentinel == 7.0)
        assert all(p.grad is grad for p, grad in zip(params, before))
        assert_restored(transformer, training_before=True)
    finally:
        params[0].grad = None
        transformer.eval()


def test_rejects_forward_only_model():
    forward_only = StaticAttentionModel([torch.full((1, 1, 2, 2), 0.5)])
    with pytest.raises(TypeError, match="GradientInterpretable"):
        CheferRelevance(forward_only)


def test_target_out_of_range(multiclass_transformer, multiclass_batch):
    with pytest.raises(ValueError, match="out of range for this 3-class model"):
        CheferRelevance(multiclass_transformer).attribute(target_class_idx=3, **multiclass_batch)
    assert_restored(multiclass_transformer, training_before=False)


def test_binary_target_must_be_0_or_1(transformer, flat_batch):
    with pytest.raises(ValueError, match=r"out of range for this binary \(one logit, classes 0 and 1\) model"):
        CheferRelevance(transformer).attribute(target_class_idx=2, **flat_batch)
    assert_restored(transformer, training_before=False)


def test_missing_feature_key_is_named(transformer, flat_batch):
    with pytest.raises(KeyError, match="conditions"):
        CheferRelevance(transformer)(procedures=flat_batch["procedures"])


def test_a_non_finite_prediction_is_named(lab_transformer, lab_batch):
    model = copy.deepcopy(lab_transformer)
    with torch.no_grad():
        model.fc.bias.fill_(float("inf"))  # attention stays finite; the gradient would not notice
    with pytest.raises(ValueError, match=r"Transformer predicts NaN or infinity for sample\(s\) \[0, 1, 2, 3, 4, 5, 6, 7\]"):
        CheferRelevance(model).attribute(**lab_batch)


def test_a_non_finite_relevance_is_named(lab_transformer, lab_batch):
    model = copy.deepcopy(lab_transformer)
    # the same logits, but d sqrt(0) = inf times 0 makes every attention gradient NaN
    model.fc.register_forward_hook(lambda module, args, out: out + 0 * (out - out.detach()).sqrt())
    with pytest.raises(ValueError, match=r"Transformer's relevance \(attention times its gradient\) for feature "
                                         r"'conditions' hold NaN or infinity for sample\(s\) \[0, 1, 2, 3, 4, 5, 6, 7\]"):
        CheferRelevance(model).attribute(**lab_batch)
