"""Leave a model exactly as it was found, whatever happens during an explanation.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5)).train()
    >>> with evaluation_mode(net):
    ...     net.training
    False
    >>> net.training
    True
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode, then restore every module's train/eval flag and
    every parameter's ``.grad``, also after an exception."""
    modes = [(module, module.training) for module in model.modules()]
    grads = [(param, param.grad) for param in model.parameters()]
    for param, _ in grads:
        param.grad = None  # a backward inside would otherwise add to the caller's grads in place
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, grad in grads:
            param.grad = grad


@contextmanager
def gradients_enabled() -> Iterator[None]:
    """Record autograd even if the caller is inside ``no_grad`` or ``inference_mode``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield
