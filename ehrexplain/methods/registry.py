"""The method registry: each interpreter declares once what it is, and everything that lists or builds methods reads it.

Modelled on zennit's ``register_composite``: :func:`register_method` decorates an
:class:`~ehrexplain.methods.Interpreter` subclass with its name, label,
capabilities and option schema. ``make_interpreter``, ``explain_patient``,
``explain_cohort``, ``compare``, the explorer widgets and the contract tests
(``tests/test_method_contract.py``) learn about a new method from that
declaration alone.

Example:
    >>> from ehrexplain.methods import method_spec
    >>> spec = method_spec("integrated_gradients")
    >>> spec.label, spec.signed, spec.has_delta, spec.options["steps"].where
    ('Integrated Gradients', True, True, 'both')
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..core.model_checks import uncompiled
from ..core.validation import Option, did_you_mean

#: Registered methods by name, in registration order.
SPECS: dict[str, "MethodSpec"] = {}
#: The same registry as ``{name: interpreter class}`` (``ehrexplain.methods.METHODS``).
METHODS: dict[str, type] = {}


@dataclass(frozen=True)
class MethodSpec:
    """What one registered method is.

    Attributes:
        name, label: the registry key (``"rollout"``) and the name people read (``"Attention Rollout"``).
        cls: the interpreter class.
        signed: scores carry a sign (``False``: non-negative relevance).
        class_specific: the scores depend on the class explained (``target_class_idx``).
        uses_baseline: ``attribute`` takes a ``baseline``.
        has_delta: ``attribute(return_convergence_delta=True)`` returns a completeness error.
        needs_gradients, needs_attention: what the method asks of the model.
        options: per option name, its :class:`~ehrexplain.core.validation.Option`.
        supports: ``supports(model)`` is ``None`` when the method can explain ``model``,
            else the reason it cannot (``"needs attention maps, but ..."``).
    """

    name: str
    label: str
    cls: type
    signed: bool
    class_specific: bool
    uses_baseline: bool
    has_delta: bool
    needs_gradients: bool
    needs_attention: bool
    options: dict[str, Option] = field(default_factory=dict)
    supports: Callable[[object], Optional[str]] = lambda model: None

    def schema(self, where: str) -> dict[str, Option]:
        """The options that go to ``where`` (``"init"`` or ``"call"``; ``"both"`` options are in each)."""
        return {name: option for name, option in self.options.items() if option.where in (where, "both")}

    def split(self, options: dict) -> tuple[dict, dict]:
        """``(constructor options, attribute options)``; unknown names refused with "did you mean".

        Schema options are checked here (``"both"`` ones go to the constructor); the
        others ``attribute`` takes (``baseline``, ``target_class_idx``) pass through
        and are checked by the call.

        Example:
            >>> method_spec("integrated_gradients").split({"steps": 8, "internal_batch_size": 128})
            ({'steps': 8}, {'internal_batch_size': 128})
        """
        shared = set(inspect.signature(self.cls.attribute).parameters) - {"self", "data"}
        known = set(self.options) | shared
        unknown = [name for name in options if name not in known]
        if unknown:
            raise TypeError(
                f"{self.cls.__name__} has no option {unknown[0]!r}{did_you_mean(unknown[0], known)} "
                f"It takes {sorted(known)}"
            )
        owner = self.cls.__name__
        init = {name: option.check(options[name], owner) for name, option in self.schema("init").items() if name in options}
        call = {name: self.options[name].check(value, owner) if name in self.options else value
                for name, value in options.items() if name not in init}  # fmt: skip
        return init, call

    def needs(self) -> str:
        """What the method asks of the model, in words."""
        parts = ["attention maps"] * self.needs_attention + ["gradients"] * self.needs_gradients
        return " and ".join(parts) or "forward passes only"


def method_spec(name: str) -> MethodSpec:
    """The registered :class:`MethodSpec` called ``name``; ``ValueError`` naming the choices otherwise."""
    if not isinstance(name, str) or name not in SPECS:
        raise ValueError(f"unknown method {name!r}{did_you_mean(str(name), SPECS)} Choose one of {sorted(SPECS)}")
    return SPECS[name]


def make_interpreter(name: str, model, **options):
    """Build the interpreter registered as ``name`` for ``model``.

    Each option goes where the method's schema says: constructor options
    (``steps``, ``head_fusion``) to the constructor, call options
    (``internal_batch_size``) are bound to the interpreter and used by every
    ``attribute`` call that does not pass its own.

    Example:
        >>> ig = make_interpreter("integrated_gradients", model, steps=100, internal_batch_size=128)
        >>> type(ig).__name__, ig.steps, ig.call_defaults   # steps to the constructor, the batch size to every call
        ('IntegratedGradients', 100, {'internal_batch_size': 128})
    """
    spec = method_spec(name)
    init, call = spec.split(options)
    interpreter = spec.cls(model, **init)
    interpreter.call_defaults = call
    return interpreter


def register_method(name: str, *, label: str, signed: bool, class_specific: bool, uses_baseline: bool,
                    has_delta: bool, needs_gradients: bool, needs_attention: bool, options=(), supports=None):
    """Class decorator: register an :class:`~ehrexplain.methods.Interpreter` subclass under ``name``.

    ``options`` is a sequence of :class:`~ehrexplain.core.validation.Option`; the
    constructor then checks its options against them before it runs, and every
    ``attribute`` call checks its own. ``supports(model)`` returns why a model
    cannot be explained (``None`` when it can).

    Example:
        >>> from ehrexplain.methods import Interpreter
        >>> @register_method("noop", label="No-op", signed=False, class_specific=False, uses_baseline=False,
        ...                  has_delta=False, needs_gradients=False, needs_attention=False)
        ... class Noop(Interpreter):
        ...     def attribute(self, target_class_idx=None, **data):
        ...         return {}
        >>> method_spec("noop").cls is Noop
        True
        >>> unregister_method("noop")
    """

    def decorate(cls):
        from ._base import Interpreter

        if not (isinstance(cls, type) and issubclass(cls, Interpreter)):
            raise TypeError(f"register_method({name!r}) decorates an ehrexplain.methods.Interpreter subclass, got {cls!r}")
        if name in SPECS and SPECS[name].cls is not cls:
            raise ValueError(f"a method is already registered as {name!r} ({SPECS[name].cls.__name__})")
        supported = supports or (lambda model: None)
        spec = MethodSpec(name, label, cls, signed, class_specific, uses_baseline, has_delta, needs_gradients,
                          needs_attention, {option.name: option for option in options},
                          lambda model: supported(uncompiled(model)))
        cls.spec, cls.signed_scores = spec, signed
        cls.__init__ = _checked_init(cls.__init__, spec)
        SPECS[name], METHODS[name] = spec, cls
        return cls

    return decorate


def unregister_method(name: str) -> None:
    """Remove ``name`` from the registry (for tests and notebooks that register a toy method)."""
    SPECS.pop(name, None)
    METHODS.pop(name, None)


def _checked_init(init, spec: MethodSpec):
    """``init`` whose constructor options are checked against ``spec`` first (numpy scalars converted).

    A ``torch.compile``-d model is replaced by the module it wraps (:func:`~ehrexplain.core.model_checks.uncompiled`).
    """
    signature = inspect.signature(init)
    model_name = next(iter(list(signature.parameters)[1:]), None)  # the first after self
    schema = spec.schema("init")

    @functools.wraps(init)
    def checked(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        if model_name in bound.arguments:
            bound.arguments[model_name] = uncompiled(bound.arguments[model_name])
        for option_name, value in bound.arguments.items():
            if option_name in schema:
                bound.arguments[option_name] = schema[option_name].check(value, spec.cls.__name__)
        init(*bound.args, **bound.kwargs)

    return checked
