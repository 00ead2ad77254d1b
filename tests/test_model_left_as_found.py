"""Every interpreter leaves the model as it found it, also when the model fails mid-call."""

import pytest
import torch
from conftest import assert_restored

from ehrexplain.methods import METHODS
from ehrexplain.methods.deeplift import RescaleActivation


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
        assert not any(isinstance(m, RescaleActivation) for m in transformer.modules())
        assert torch.equal(weight.grad, torch.ones_like(weight))
    finally:
        weight.grad = None
        transformer.eval()
