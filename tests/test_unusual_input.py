"""Unusual but valid calls give the same answer as the plain call, and leave nothing behind."""

import copy

import pytest
import torch

from ehrexplain import AttentionRollout, CheferRelevance, DeepLift, IntegratedGradients

METHODS = {
    "rollout": AttentionRollout,
    "chefer": CheferRelevance,
    "integrated_gradients": lambda m: IntegratedGradients(m, steps=4),
    "deeplift": DeepLift,
}


def assert_same(a, b):
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_batch_made_under_inference_mode(transformer, flat_batch, method):
    with torch.inference_mode():
        frozen_batch = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in flat_batch.items()}
    explain = METHODS[method](transformer)
    assert_same(explain.attribute(**frozen_batch), explain.attribute(**flat_batch))


@pytest.mark.parametrize("method", METHODS)
def test_frozen_model_gives_same_scores_and_stays_frozen(transformer, flat_batch, method):
    frozen = copy.deepcopy(transformer).requires_grad_(False)
    assert_same(METHODS[method](frozen).attribute(**flat_batch), METHODS[method](transformer).attribute(**flat_batch))
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.grad is None for p in frozen.parameters())


@pytest.mark.parametrize("method", ["rollout", "chefer"])
def test_attention_modules_replaced_after_construction(transformer, flat_batch, method):
    from pyhealth.models.transformer import Attention

    model = copy.deepcopy(transformer)
    explain = METHODS[method](model)  # built before the replacement
    for layer in model.transformer.values():
        for block in layer.transformer:
            block.attention.attention = Attention()
    assert_same(explain.attribute(**flat_batch), METHODS[method](model).attribute(**flat_batch))
    for layer in model.transformer.values():  # replaced by something that is no attention at all
        for block in layer.transformer:
            block.attention.attention = torch.nn.Identity()
    with pytest.raises(TypeError, match="no longer has PyHealth attention modules"):
        explain.attribute(**flat_batch)


@pytest.mark.parametrize("method", ["rollout", "chefer"])
def test_captured_attention_is_released(transformer, flat_batch, method):
    explain = METHODS[method](transformer)
    explain.attribute(**flat_batch)
    assert explain._view._maps == {} and explain._view._grads == {}
