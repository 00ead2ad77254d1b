"""What every ehrexplain interpreter shares.

Interpreters subclass PyHealth's ``BaseInterpreter`` so they are accepted
wherever PyHealth takes an interpreter (its interpretability metrics and
ensembles). Unlike PyHealth's base class they do not switch the model to eval
mode for good at construction: each ``attribute`` call runs in eval mode and
restores the model's own mode afterwards.

Every public method that takes a batch (``attribute``, ``attention_maps``, ...)
is wrapped once, here, so that each call

1. holds the model's lock (one ``RLock`` per model object): calls on one model
   from several threads, through any mix of interpreters, run one at a time and
   give exactly the sequential results;
2. checks the batch and options with :func:`ehrexplain.validation.validate_call`
   before any forward pass (option names come from the method's own signature);
3. drops captured attention maps and gradients when it returns.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Optional, Union

import torch
from pyhealth.interpret.methods.base_interpreter import BaseInterpreter

from ..core.validation import validate_call

TargetIndex = Optional[Union[int, torch.Tensor]]

#: Public methods that take a batch as ``**data``; wrapped by :func:`checked_call`.
CHECKED_METHODS = ("attribute", "attention_maps", "rollout_matrices")

_LOCKS: "weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model) -> threading.RLock:
    """The one re-entrant lock of ``model``, created on first use and freed with the model.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> model_lock(net) is model_lock(net)
        True
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def checked_call(method):
    """Wrap ``method(self, **data)``: lock the model, validate the call, release captures."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if args:
            raise TypeError(
                f"{method.__qualname__}() takes keyword arguments only, got {len(args)} positional; "
                "pass the batch as **batch and options by name"
            )
        with model_lock(self.model):
            checked = validate_call(self.model, method, kwargs)
            try:
                return method(self, **checked)
            finally:
                release = getattr(getattr(self, "_view", None), "release_captured", None)
                if callable(release):
                    release()

    wrapper.checked = True
    return wrapper


class Interpreter(BaseInterpreter):
    """Base class: keeps the model untouched until ``attribute`` is called.

    Example:
        >>> # interpreter = AttentionRollout(model); interpreter(**batch)  # same as .attribute
    """

    #: True when scores carry a sign (IG, DeepLift); False for non-negative
    #: relevance (rollout, Chefer). Evaluation metrics rank by it.
    signed_scores: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in CHECKED_METHODS:
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "checked", False):
                setattr(cls, name, checked_call(method))

    def __init__(self, model: torch.nn.Module):
        # BaseInterpreter.__init__ would call model.eval() and leave it so.
        self.model = model

    def _resolve_target_indices(self, logits: torch.Tensor, target_class_idx: TargetIndex) -> torch.Tensor:
        """``[batch]`` class indices to explain, checked against the number of classes.

        ``target_class_idx`` may be an int or a ``[batch]`` tensor; ``None`` means
        the predicted class. Binary models have one logit (the evidence for class
        1) and, as in PyHealth, explain it whichever of their two classes (0 or 1)
        is asked for; any other index is an error.
        """
        batch, n_classes = logits.shape[0], logits.shape[-1]
        if target_class_idx is None:
            return logits.argmax(dim=-1)  # a single logit gives 0 for every row
        target = torch.as_tensor(target_class_idx, device=logits.device).long().reshape(-1)
        if target.numel() == 1:
            target = target.expand(batch)
        if target.numel() != batch:
            raise ValueError(f"target_class_idx has {target.numel()} entries but the batch has {batch} samples")
        valid = 2 if n_classes == 1 else n_classes
        if (target < 0).any() or (target >= valid).any():
            kind = "binary (one logit, classes 0 and 1)" if n_classes == 1 else f"{n_classes}-class"
            raise ValueError(
                f"target_class_idx {target_class_idx} is out of range for this {kind} model "
                f"(valid indices 0..{valid - 1})"
            )
        return torch.zeros_like(target) if n_classes == 1 else target
