"""ehrexplain: explain PyHealth EHR models with four interpreters, and learn how they work.

Importing ``ehrexplain`` is cheap; PyHealth (slow to import) is loaded the first
time an interpreter is used.

In the docstring examples, ``model`` is a trained PyHealth Transformer, ``cohort`` the synthetic
cohort it was trained on and ``batch`` eight held-out patients as a PyHealth dataloader yields them:
the notebooks' demo, ``d = ehrexplain.data.demo(); model, cohort = d.model, d.cohort;
batch = cohort.batch(d.test[:8])``.

Example:
    >>> import ehrexplain
    >>> rollout = ehrexplain.AttentionRollout(model)
    >>> scores = rollout(**batch)                      # one score per input token, per feature key
    >>> {key: tuple(value.shape) for key, value in scores.items()}
    {'conditions': (8, 11), 'procedures': (8, 3), 'drugs': (8, 6)}
    >>> bool(scores["conditions"].sum(-1).allclose(torch.ones(8)))   # rollout shares out 1 per key
    True
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
