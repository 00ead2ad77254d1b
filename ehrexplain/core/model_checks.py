"""The model and the batch checked together: every parameter and buffer, and the labels the model's loss reads.

A PyHealth model reports ``model.device`` from one tiny parameter, so a model with one layer in
bfloat16 or on the ``meta`` device looks fine there and fails deep inside torch. Here every
parameter and floating buffer is read:

- ``ValueError`` when any of them is on the ``meta`` device (no values) or they sit on several
  devices, naming the first parameter of each;
- ``TypeError`` when their floating dtypes differ, or are not float32/float64, naming a
  parameter of each dtype.

Then the batch is put in the model's dtype, which is what its caller means: float32/float64
features (and a feature's times) are cast to the model's dtype (float64 labs into a float32 model
are rounded to float32, as the model would compute anyway; float32 labs into a ``model.double()``
are widened exactly), and the label of a binary, multilabel or regression model is cast to it
too (PyHealth's loss, which ``model(**batch)`` computes, refuses an int64 binary label). The
caller's tensors are never changed: casts are new tensors.

Example:
    >>> import torch
    >>> model_dtype(torch.nn.Linear(2, 1).double())
    torch.float64
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from .model_state import ModelTree

FLOAT_DTYPES = (torch.float32, torch.float64)
#: Label kinds whose PyHealth loss takes float targets.
FLOAT_LABEL_MODES = frozenset({"binary", "multilabel", "regression"})


def in_model_dtype(model: nn.Module, data: dict, dtype: torch.dtype | None) -> dict:
    """``data`` with float features and float-target labels in ``dtype``, ``model``'s (:func:`model_dtype`).

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1).double()
        >>> net.feature_keys, net.label_keys = ["labs"], []
        >>> in_model_dtype(net, {"labs": torch.ones(1, 2)}, model_dtype(net))["labs"].dtype
        torch.float64
    """
    if dtype is None:
        return data
    features = set(getattr(model, "feature_keys", []))
    labels = set(getattr(model, "label_keys", [])) if getattr(model, "mode", None) in FLOAT_LABEL_MODES else set()
    data = dict(data)
    for key in features & data.keys():
        data[key] = _floats_to(data[key], dtype)
    for key in labels & data.keys():
        if isinstance(data[key], torch.Tensor):
            data[key] = data[key].to(dtype)
    return data


def uncompiled(model):
    """The module that ``torch.compile(model)`` wraps, else ``model`` itself.

    Interpreters explain that original module: capture hooks on attention maps and their
    gradients do not survive a compiled graph, and the original gives exactly the numbers
    the compiled model computes eagerly.

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> uncompiled(net) is net
        True
    """
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # no compiled model exists before torch.compile ran
    while eval_frame is not None and isinstance(model, eval_frame.OptimizedModule):
        model = model._orig_mod
    return model


def non_finite_samples(values: torch.Tensor, rows: torch.Tensor | None = None) -> list[int]:
    """The samples whose row of ``values`` (``[rows, ...]``) holds NaN or infinity; row ``i`` is sample ``rows[i]``.

    Example:
        >>> non_finite_samples(torch.tensor([[1.0], [float("nan")], [2.0]]))
        [1]
    """
    if values.is_floating_point() and torch.isfinite(values.sum()):  # a NaN or infinity makes the sum one
        return []
    bad = ~torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
    samples = bad.nonzero().squeeze(1) if rows is None else rows[bad]
    return samples.unique().tolist()


def check_finite_prediction(model: nn.Module, logits: torch.Tensor, rows: torch.Tensor | None = None,
                            masks: dict | None = None, context: str = "") -> None:
    """``ValueError`` naming the samples whose logits are NaN or infinite, and the features in ``masks`` they lack."""
    samples = non_finite_samples(logits, rows)
    if not samples:
        return
    empty = [key for key, mask in (masks or {}).items() if not mask[samples].any()]
    raise ValueError(
        f"{type(model).__name__} predicts NaN or infinity for sample(s) {samples[:10]}{context}"
        + (f", which have no data in {empty}" if empty else "")
        + "; a non-finite prediction cannot be explained (e.g. PyHealth's MLP divides by zero for a patient "
        "without codes, and values far outside the training range overflow): drop, fill or rescale those samples"
    )


def model_dtype(model: nn.Module, tree: ModelTree | None = None) -> torch.dtype | None:
    """The one floating dtype of all ``model``'s parameters and floating buffers (``None`` if it has none).

    Raises ``ValueError`` for tensors on ``meta`` or on several devices and ``TypeError`` for
    mixed or non-float32/float64 dtypes, naming the parameters. ``tree``: ``model``'s
    :class:`~.model_state.ModelTree` when the caller has walked it already.
    """
    if not isinstance(model, nn.Module):
        return None
    tree = tree or ModelTree.of(model)
    tensors = tree.parameters + tree.buffers  # the common case, checked without building names
    dtypes = {t.dtype for t in tensors if t.is_floating_point()}
    if len({t.device for t in tensors}) <= 1 and len(dtypes) <= 1 and dtypes <= set(FLOAT_DTYPES):
        if not tensors or tensors[0].device.type != "meta":
            return next(iter(dtypes), None)
    return _named_model_dtype(model)


def _named_model_dtype(model: nn.Module) -> torch.dtype | None:
    """:func:`model_dtype` with every tensor named, for the error messages."""
    tensors = [(f"parameter {name!r}", t) for name, t in model.named_parameters()]
    tensors += [(f"buffer {name!r}", t) for name, t in model.named_buffers()]
    name = type(model).__name__
    on_meta = [what for what, t in tensors if t.device.type == "meta"]
    if on_meta:
        raise ValueError(
            f"{name} has {len(on_meta)} of {len(tensors)} tensors on the meta device (no values), e.g. {on_meta[0]}; "
            "load real weights first, e.g. model.to_empty(device='cpu') then load_state_dict(...)"
        )
    devices = _first_names((what, t.device) for what, t in tensors)
    if len(devices) > 1:
        raise ValueError(f"{name} has tensors on several devices ({_listed(devices)}); move it to one with model.to(device)")
    dtypes = _first_names((what, t.dtype) for what, t in tensors if t.is_floating_point())
    if len(dtypes) > 1:
        raise TypeError(
            f"{name} mixes floating dtypes ({_listed(dtypes)}); make them one with model.float() or model.double()"
        )
    dtype = next(iter(dtypes), None)
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} has {dtype} parameters (e.g. {dtypes[dtype]}); expected float32 or float64, use model.float()")
    return dtype


def _first_names(pairs) -> dict:
    """``{key: the first name with that key}`` from ``(name, key)`` pairs, in order of appearance."""
    first: dict = {}
    for what, key in pairs:
        first.setdefault(key, what)
    return first


def _listed(first: dict) -> str:
    """``"torch.float32: parameter 'a'; torch.bfloat16: parameter 'fc.weight'"``."""
    return "; ".join(f"{key}: {what}" for key, what in first.items())


def _floats_to(value, dtype: torch.dtype):
    """``value`` (a tensor, or a tuple of them as PyHealth batches features) with float32/64 tensors in ``dtype``.

    Other dtypes (bfloat16 labs, integer token ids) are left for the batch check to judge.
    """
    if isinstance(value, (tuple, list)):
        return type(value)(_floats_to(part, dtype) for part in value)
    if isinstance(value, torch.Tensor) and value.dtype in FLOAT_DTYPES:
        return value.to(dtype)
    return value
