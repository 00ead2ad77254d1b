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
2. checks the batch and options with :func:`ehrexplain.core.validation.validate_call`
   before any forward pass (options against the method's registered schema), and
   keeps the result, a :class:`~ehrexplain.core.validation.CheckedCall`, as
   ``self._call`` while the method runs: the model's module tree and dtype, and the
   class each sample is explained for, found once (:meth:`Interpreter._targets`);
3. drops captured attention maps and gradients when it returns.

A checked method called from inside another (rollout's ``attribute`` calls
``rollout_matrices``, which calls ``attention_maps``) is neither validated nor
released again: one call, one validation.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Optional, Union

import torch
from pyhealth.interpret.methods.base_interpreter import BaseInterpreter

from ..core.capture import as_attention_interpretable
from ..core.model_checks import non_finite_samples
from ..core.validation import CheckedCall, validate_call

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
        spec = getattr(type(self), "spec", None)
        schema = spec.schema("call") if spec is not None and method.__name__ == "attribute" else None
        if schema is not None:
            kwargs = {**self.call_defaults, **kwargs}
        with model_lock(self.model):
            if self._call is not None:  # rollout's attribute -> rollout_matrices -> attention_maps: checked once, outside
                return method(self, **kwargs)
            self._call = validate_call(self.model, method, kwargs, schema)
            try:
                return method(self, **self._call.kwargs)
            finally:
                self._call = None
                release = getattr(getattr(self, "_view", None), "release_captured", None)
                if callable(release):
                    release()

    wrapper.checked = True
    return wrapper


def attention_support(needs_gradients: bool):
    """A ``supports(model)`` for :func:`~ehrexplain.methods.register_method`: the reason attention cannot be captured.

    Example:
        >>> attention_support(False)(torch.nn.Linear(2, 2))[:45]
        'needs attention maps, but Linear neither uses'
    """

    def supports(model) -> Optional[str]:
        try:
            as_attention_interpretable(model, needs_gradients, method="")
        except TypeError as refusal:  # the capture layer's own refusal, which starts with "needs ..."
            return str(refusal).strip()
        return None

    return supports


def check_finite_per_feature(model, what: str, values: dict[str, list[torch.Tensor]]) -> None:
    """``ValueError`` naming the feature key, layer and samples where ``values[key]`` (``[batch, ...]`` per layer)
    holds NaN or infinity (``what``: "attention maps", "relevance", ...).

    Example:
        >>> check_finite_per_feature(torch.nn.Linear(1, 1), "attention maps", {"labs": [torch.ones(2, 1, 1)]})
    """
    for key, layers in values.items():
        for layer, tensor in enumerate(layers):
            samples = non_finite_samples(tensor)
            if samples:
                where = f" (layer {layer} of {len(layers)})" if len(layers) > 1 else ""
                raise ValueError(
                    f"{type(model).__name__}'s {what} for feature {key!r}{where} hold NaN or infinity for sample(s) "
                    f"{samples[:10]}; the model overflows on these inputs: check {key!r} for values far outside "
                    "the range it was trained on (e.g. unscaled units) and rescale or clip them, or drop those samples"
                )


def finite_attention_maps(model, view) -> dict[str, list[torch.Tensor]]:
    """Per feature key, the attention maps ``view`` captured (input layer first), checked to be finite."""
    maps = {key: [attn for attn, _ in layers] for key, layers in view.get_attention_layers().items()}
    check_finite_per_feature(model, "attention maps", maps)
    return maps


class Interpreter(BaseInterpreter):
    """Base class of every ehrexplain interpreter; keeps the model untouched until ``attribute`` is called.

    A new method subclasses it, implements ``attribute(target_class_idx=None, **data)``
    and registers itself with :func:`~ehrexplain.methods.register_method`; the
    batch and options are then checked before ``attribute`` runs.

    Example:
        >>> from ehrexplain import AttentionRollout
        >>> interpreter = AttentionRollout(model)
        >>> called, attributed = interpreter(**batch), interpreter.attribute(**batch)  # calling it is .attribute
        >>> all(torch.equal(called[key], attributed[key]) for key in attributed)
        True
    """

    #: True when scores carry a sign (IG, DeepLift); False for non-negative
    #: relevance (rollout, Chefer). Set from the registration.
    signed_scores: bool = False
    #: ``attribute`` options bound when the interpreter was built (``make_interpreter``); a call's own win.
    call_defaults: dict = {}
    #: The running call, checked (under the model's lock); ``None`` between calls. Nested checked calls use it.
    _call: Optional[CheckedCall] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in CHECKED_METHODS:
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "checked", False):
                setattr(cls, name, checked_call(method))

    def __init__(self, model: torch.nn.Module):
        # BaseInterpreter.__init__ would call model.eval() and leave it so.
        self.model = model

    def _targets(self, logits: torch.Tensor) -> torch.Tensor:
        """``[batch]`` class indices to explain, from the call's target, resolved once when it was checked.

        ``target_class_idx`` may be an int or a ``[batch]`` tensor; ``None`` means
        the predicted class (the arg-max of ``logits``). Binary models have one logit
        (the evidence for class 1) and, as in PyHealth, explain it whichever of their
        two classes (0 or 1) is asked for; any other index is refused when the call is
        checked. A multilabel model has no one predicted class (each label has its own
        logit and a patient may have none or several), so it needs an explicit label index.
        See :class:`~ehrexplain.core.validation.Target`.
        """
        return self._call.target.indices(logits)


#: Below this many positions (every key) full relevance matrices are cheaper than asking which row is read.
ROW_PATH_POSITIONS = 64


def rows_read(view, maps: dict[str, list[torch.Tensor]], data: dict) -> dict[str, torch.Tensor] | None:
    """The row per patient ``view``'s relevance readout takes from each key's matrix; ``None`` where it cannot say.

    Rollout and Chefer then compose only that row, O(seq²) per layer instead of O(seq³).
    ``None`` too for short sequences (all below :data:`ROW_PATH_POSITIONS`), where the
    full matrices cost less than the question.

    Example:
        >>> view = as_attention_interpretable(model)   # the demo Transformer predicts from its first position
        >>> rows_read(view, {"drugs": [torch.zeros(8, 2, 80, 80)]}, batch)["drugs"].tolist()
        [0, 0, 0, 0, 0, 0, 0, 0]
        >>> rows_read(view, {"drugs": [torch.zeros(8, 2, 6, 6)]}, batch) is None   # short: full matrices
        True
    """
    rows_of = getattr(view, "relevance_rows", None)
    if not callable(rows_of) or all(layers[0].shape[-1] < ROW_PATH_POSITIONS for layers in maps.values()):
        return None
    sizes = {key: (layers[0].shape[0], layers[0].shape[-1]) for key, layers in maps.items()}
    rows = rows_of(sizes, **data)
    return None if rows is None else {key: r.to(maps[key][0].device) for key, r in rows.items()}
