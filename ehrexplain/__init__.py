"""ehrexplain: explain PyHealth EHR models with four interpreters, and learn how they work.

Importing ``ehrexplain`` is cheap; PyHealth (slow to import) is loaded the first
time an interpreter is used.

Example:
    >>> import ehrexplain
    >>> # rollout = ehrexplain.AttentionRollout(trained_transformer)
    >>> # scores = rollout(**batch)
"""

from importlib import import_module

from . import _moved
from .core.interfaces import AttentionInterpretable, CheferInterpretable, GradientInterpretable

_moved.install()

__version__ = "0.1.0"

_LAZY = {
    "AttentionRollout": "ehrexplain.methods",
    "CheferRelevance": "ehrexplain.methods",
    "IntegratedGradients": "ehrexplain.methods",
    "DeepLift": "ehrexplain.methods",
    "Occlusion": "ehrexplain.methods",
    "Interpreter": "ehrexplain.methods",
    "register_method": "ehrexplain.methods",
    "method_spec": "ehrexplain.methods",
    "make_interpreter": "ehrexplain.methods",
    "as_attention_interpretable": "ehrexplain.core.capture",
    "PyHealthAttentionAdapter": "ehrexplain.core.capture",
    "ConvergenceWarning": "ehrexplain.core.exceptions",
    "InexactDeepLiftWarning": "ehrexplain.core.exceptions",
    "explain_cohort": "ehrexplain.cohort",
    "read_attributions": "ehrexplain.cohort",
}

__all__ = ["AttentionInterpretable", "GradientInterpretable", "CheferInterpretable", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ehrexplain' has no attribute {name!r}")
