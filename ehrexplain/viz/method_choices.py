"""Which methods a model supports (with the reason for the others) and how its labels read.

Example:
    >>> from ehrexplain.viz.method_choices import unsupported_html
    >>> "unavailable: Chefer relevance: needs" in unsupported_html({"chefer": "needs attention gradients"})
    True
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from ..methods import SPECS, method_spec


class _RegisteredLabels(Mapping):
    """``{method name: label}`` read live from the registry, in registration order."""

    def __getitem__(self, name: str) -> str:
        return SPECS[name].label

    def __iter__(self):
        return iter(list(SPECS))

    def __len__(self) -> int:
        return len(SPECS)


#: ``{method name: label}`` of every registered method (a live view of the registry).
METHOD_LABELS = _RegisteredLabels()


def n_classes(model) -> int:
    """Number of model outputs (1 for a PyHealth binary model: one logit, P(label = 1))."""
    return int(model.get_output_size()) if hasattr(model, "get_output_size") else 1


def label_name(model, target: int) -> str:
    """The label a probability is about: ``label = 1`` for a one-logit model, else class ``target``'s name.

    Example:
        >>> label_name(model, 0)   # a binary model: its one logit is P(label = 1), whichever target
        'label = 1'
    """
    index = 1 if n_classes(model) == 1 else int(target)
    processors = getattr(getattr(model, "dataset", None), "output_processors", {}) or {}
    vocab = next((getattr(p, "label_vocab", None) for p in processors.values()), None) or {}
    names = {i: raw for raw, i in vocab.items()}
    return f"label = {names.get(index, index)}"


def method_support(model, methods) -> tuple[list[str], dict[str, str]]:
    """The methods ``model`` supports, and why it cannot support each of the others.

    Example:
        >>> from ehrexplain.testing import ForwardOnlyModel
        >>> method_support(ForwardOnlyModel(model), ["rollout", "chefer"])  # doctest: +ELLIPSIS
        (['rollout'], {'chefer': 'needs attention gradients, but ForwardOnlyModel is only AttentionInterpretable ...'})
    """
    supported, reasons = [], {}
    for method in methods:
        reason = method_spec(method).supports(model)
        if reason is None:
            supported.append(method)
        else:
            reasons[method] = reason
    if not supported:
        raise TypeError(f"{type(model).__name__} supports none of {list(methods)}: {reasons}")
    return supported, reasons


def unsupported_html(reasons: dict[str, str]) -> str:
    """One grey line per method the model cannot support, with the reason."""
    lines = [f"{METHOD_LABELS.get(m, m)}: {reason}" for m, reason in reasons.items()]
    return "".join(f'<div style="color:#666;font-size:12px">unavailable: {html.escape(line)}</div>' for line in lines)
