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
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn


def submodules(module: nn.Module) -> list[nn.Module]:
    """``list(module.modules())``, each module once in the same order, about three times faster.

    ``nn.Module.modules`` nests one generator per level of the tree and resumes each of
    them for every module below it; a walk of the children dictionaries does not.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.ReLU()))
        >>> submodules(net) == list(net.modules())
        True
    """
    found: list[nn.Module] = []
    seen: set[nn.Module] = set()

    def visit(current: nn.Module) -> None:
        seen.add(current)
        found.append(current)
        for child in current._modules.values():
            if child is not None and child not in seen:
                visit(child)

    visit(module)
    return found


@dataclass(frozen=True)
class ModelTree:
    """Every module, parameter and buffer of a model, found in one walk of its module tree.

    ``model.modules()``, ``model.parameters()`` and ``model.buffers()`` each walk the
    whole tree again; a checked call walks it once (:meth:`of`) and hands the lists on.
    Each module, parameter and buffer appears once, in ``model.modules()`` order.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        >>> tree = ModelTree.of(net)
        >>> len(tree.modules), len(tree.parameters) == len(list(net.parameters())), len(tree.buffers)
        (3, True, 3)
    """

    modules: tuple
    parameters: tuple
    buffers: tuple

    @classmethod
    def of(cls, model: nn.Module) -> "ModelTree":
        modules = tuple(submodules(model))
        params = {id(p): p for module in modules for p in module._parameters.values() if p is not None}
        buffers = {id(b): b for module in modules for b in module._buffers.values() if b is not None}
        return cls(modules, tuple(params.values()), tuple(buffers.values()))


@contextmanager
def evaluation_mode(model: nn.Module, tree: ModelTree | None = None, backward: bool = True) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode, then restore every module's train/eval flag and
    every parameter's ``.grad`` and ``requires_grad``, also after an exception.

    It changes nothing else: ``.grad`` is set aside inside (a backward would
    otherwise add to the caller's grads in place), and a method that needs
    parameters to require gradients or not asks :func:`parameters_require_grad`.
    ``tree`` is ``model``'s :class:`ModelTree` when the caller has walked it already;
    ``backward=False`` promises no backward runs inside (a forward under ``no_grad``),
    so parameters are left alone: nothing there can change them.
    """
    tree = tree or ModelTree.of(model)
    modes = [(module, module.training) for module in tree.modules]
    params = [(param, param.grad, param.requires_grad) for param in tree.parameters] if backward else []
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
def parameters_require_grad(model: nn.Module, required: bool, tree: ModelTree | None = None) -> Iterator[nn.Module]:
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
    flags = [(param, param.requires_grad) for param in (tree or ModelTree.of(model)).parameters]
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
