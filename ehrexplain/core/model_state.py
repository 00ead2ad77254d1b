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

    It changes nothing else: ``.grad`` is set aside inside (a backward would
    otherwise add to the caller's grads in place), and a method that needs
    parameters to require gradients or not asks :func:`parameters_require_grad`.
    """
    modes = [(module, module.training) for module in model.modules()]
    params = [(param, param.grad, param.requires_grad) for param in model.parameters()]
    for param, grad, _ in params:
        if grad is not None:
            param.grad = None
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
def parameters_require_grad(model: nn.Module, required: bool) -> Iterator[nn.Module]:
    """Every parameter of ``model`` requires grad (``required=True``) or not inside; each flag restored after.

    Chefer needs the gradient of attention maps, so parameters must require it even
    on a frozen model; DeepLIFT's rules need them not to, so that only
    input-dependent tensors do.

    Example:
        >>> net = torch.nn.Linear(2, 1).requires_grad_(False)
        >>> with parameters_require_grad(net, True):
        ...     net.weight.requires_grad
        True
        >>> net.weight.requires_grad
        False
    """
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        for param, flag in flags:
            if flag != required:
                param.requires_grad_(required)
        yield model
    finally:
        for param, flag in flags:
            if param.requires_grad != flag:
                param.requires_grad_(flag)


@contextmanager
def gradients_enabled() -> Iterator[None]:
    """Record autograd even if the caller is inside ``no_grad`` or ``inference_mode``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield
