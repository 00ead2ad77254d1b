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
    every parameter's ``.grad`` and ``requires_grad``, also after an exception.

    Parameters require gradients inside, so that gradient methods (Chefer needs
    the gradient of attention maps) also work on a frozen model.
    """
    modes = [(module, module.training) for module in model.modules()]
    params = [(param, param.grad, param.requires_grad) for param in model.parameters()]
    for param, grad, requires_grad in params:
        if grad is not None:
            param.grad = None  # a backward inside would otherwise add to the caller's grads in place
        if not requires_grad:
            param.requires_grad_(True)
    if any(training for _, training in modes):
        model.eval()
    try:
        yield model
    finally:  # only what differs is written back: nn.Module attribute writes are slow
        for module, training in modes:
            if module.training != training:
                module.training = training
        for param, grad, requires_grad in params:
            if param.requires_grad != requires_grad:
                param.requires_grad_(requires_grad)
            if param.grad is not grad:
                param.grad = grad


@contextmanager
def gradients_enabled() -> Iterator[None]:
    """Record autograd even if the caller is inside ``no_grad`` or ``inference_mode``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield
