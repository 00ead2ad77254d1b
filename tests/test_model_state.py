"""evaluation_mode and gradients_enabled restore what they change."""

import pytest
import torch

from ehrexplain.core.model_state import evaluation_mode, gradients_enabled, parameters_require_grad


def test_modes_and_grads_restored_after_an_error():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    net.train()
    net[1].eval()  # a mixed state must come back exactly
    grad = torch.ones(2, 2)
    net[0].weight.grad = grad
    with pytest.raises(ValueError):
        with evaluation_mode(net):
            assert not net.training and not net[0].training
            net(torch.ones(1, 2)).sum().backward()
            raise ValueError("fail inside")
    assert net.training and net[0].training and not net[1].training
    assert net[0].weight.grad is grad and net[0].bias.grad is None
    assert torch.equal(grad, torch.ones(2, 2)), "the backward inside must not add to the caller's grad in place"


def test_gradients_enabled_inside_no_grad_and_inference_mode():
    for context in (torch.no_grad, torch.inference_mode):
        with context(), gradients_enabled():
            x = torch.ones(2, requires_grad=True)
            assert (x * 2).sum().requires_grad


def test_evaluation_mode_only_restores_and_parameters_require_grad_sets_and_restores():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    net[0].requires_grad_(False)  # a half-frozen model
    with evaluation_mode(net):
        assert [p.requires_grad for p in net.parameters()] == [False, False, True, True]  # not forced
    for required in (True, False):
        with pytest.raises(ValueError):
            with parameters_require_grad(net, required):
                assert all(p.requires_grad == required for p in net.parameters())
                raise ValueError("fail inside")
        assert [p.requires_grad for p in net.parameters()] == [False, False, True, True]
