"""Unusual but valid calls give the same answer as the plain call, and leave nothing behind."""

import copy

import pytest
import torch

from ehrexplain import AttentionRollout, CheferRelevance, DeepLift, IntegratedGradients
from ehrexplain.methods import SPECS, make_interpreter

METHODS = {
    "rollout": AttentionRollout,
    "chefer": CheferRelevance,
    "integrated_gradients": lambda m: IntegratedGradients(m, steps=4),
    "deeplift": DeepLift,
}


def assert_same(a, b):
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def registered_scores(name, model, batch):
    """Scores of the registered method ``name`` (IG with 4 steps, to stay fast)."""
    options = {"steps": 4} if "steps" in SPECS[name].options else {}
    result = make_interpreter(name, model, **options).attribute(**batch)
    return result[0] if isinstance(result, tuple) else result


@pytest.mark.parametrize("name", list(SPECS))
def test_a_compiled_model_is_explained_as_the_module_it_wraps(name, lab_transformer, lab_batch):
    graphs = []

    def eager(graph, example_inputs):  # torch.compile's "eager" backend, keeping the graphs it is given
        graphs.append(graph)
        return graph.forward

    compiled = torch.compile(lab_transformer, backend=eager)
    assert SPECS[name].supports(compiled) is None
    assert make_interpreter(name, compiled).model is lab_transformer
    assert_same(registered_scores(name, compiled, lab_batch), registered_scores(name, lab_transformer, lab_batch))
    assert graphs == []  # capture hooks do not survive a compiled graph: the original module is what ran


@pytest.mark.parametrize("name", list(SPECS))
def test_a_caller_tensor_that_requires_grad_is_left_as_found(name, lab_transformer, lab_batch):
    labs = lab_batch["labs"].clone().requires_grad_(True)
    scores = registered_scores(name, lab_transformer, {**lab_batch, "labs": labs})
    assert labs.grad is None and labs.requires_grad and labs.is_leaf
    assert torch.equal(labs.detach(), lab_batch["labs"])
    assert not any(score.requires_grad for score in scores.values())
    assert_same(scores, registered_scores(name, lab_transformer, lab_batch))


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
