"""The interpreters, one module each, and the registry that names and builds them.

Each interpreter registers itself with :func:`register_method`; ``METHODS``
(name to class) and :func:`method_spec` (name to what the method is) read that
registry, so a new method is one new module imported here.

Example:
    >>> from ehrexplain.methods import METHODS
    >>> sorted(METHODS)
    ['chefer', 'deeplift', 'integrated_gradients', 'occlusion', 'rollout']
"""

from ._base import Interpreter
from .registry import METHODS, SPECS, MethodSpec, make_interpreter, method_spec, register_method, unregister_method

# Importing a method module registers it; this order is the order views and ``compare`` list them.
from .attention_rollout import AttentionRollout
from .chefer import CheferRelevance
from .integrated_gradients import IntegratedGradients
from .deeplift import DeepLift
from .occlusion import Occlusion
from .overview import overview

__all__ = ["Interpreter", "AttentionRollout", "CheferRelevance", "IntegratedGradients", "DeepLift", "Occlusion",
           "METHODS", "SPECS", "MethodSpec", "make_interpreter", "method_spec", "overview", "register_method",
           "unregister_method"]
