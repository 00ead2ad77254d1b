"""Every interpreter leaves the model as it found it, also when the model fails mid-call."""

import pytest
import torch
from conftest import assert_restored

from ehrexplain.methods import METHODS


@pytest.mark.parametrize("name", sorted(METHODS))
def test_error_inside_forward_restores_model(name, transformer, flat_batch):
    def explode(*_):
        raise RuntimeError("boom inside forward")

    weight = transformer.fc.weight
    weight.grad = torch.ones_like(weight)
    handle = transformer.fc.register_forward_hook(explode)
    transformer.train()
    try:
        with pytest.raises(RuntimeError, match="boom inside forward"):
            METHODS[name](transformer).attribute(**flat_batch)
    finally:
        handle.remove()
    try:
        assert_restored(transformer, training_before=True)
        assert torch.equal(weight.grad, torch.ones_like(weight))
    finally:
        weight.grad = None
        transformer.eval()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_parameter_flags_left_as_found(name, transformer, flat_batch):
    """A frozen model stays frozen and a trainable one trainable: each method sets only what it needs, inside."""
    params = list(transformer.parameters())
    for frozen in (params[::2], params):  # half frozen, then all (a fine-tuning user's model)
        for p in frozen:
            p.requires_grad_(False)
        flags = [p.requires_grad for p in params]
        grads = [None if p.grad is None else p.grad.clone() for p in params]  # the fixture's last training step left some
        try:
            METHODS[name](transformer).attribute(**flat_batch)
            assert [p.requires_grad for p in params] == flags
            assert all((p.grad is None and grad is None) or torch.equal(p.grad, grad) for p, grad in zip(params, grads))
        finally:
            for p in params:
                p.requires_grad_(True)
