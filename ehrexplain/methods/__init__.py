"""The four interpreters, one module each, and a registry to build them by name.

Example:
    >>> from ehrexplain.methods import METHODS
    >>> sorted(METHODS)
    ['chefer', 'deeplift', 'integrated_gradients', 'rollout']
"""

from .attention_rollout import AttentionRollout
from .chefer import CheferRelevance
from .deeplift import DeepLift
from .integrated_gradients import IntegratedGradients

METHODS = {
    "rollout": AttentionRollout,
    "chefer": CheferRelevance,
    "integrated_gradients": IntegratedGradients,
    "deeplift": DeepLift,
}


def make_interpreter(name: str, model, **options):
    """Build the interpreter registered as ``name`` for ``model``.

    Example:
        >>> # ig = make_interpreter("integrated_gradients", model, steps=100)
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name](model, **options)


__all__ = ["AttentionRollout", "CheferRelevance", "IntegratedGradients", "DeepLift", "METHODS", "make_interpreter"]
