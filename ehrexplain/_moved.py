"""Old module paths (before the layer folders) still import, with a DeprecationWarning.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True):
    ...     warnings.simplefilter("always")
    ...     from ehrexplain.evaluate import compare
    >>> compare.__module__
    'ehrexplain.evaluation.metrics'
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

MOVED = {
    "ehrexplain.interfaces": "ehrexplain.core.interfaces",
    "ehrexplain.capture": "ehrexplain.core.capture",
    "ehrexplain.validation": "ehrexplain.core.validation",
    "ehrexplain.model_state": "ehrexplain.core.model_state",
    "ehrexplain.synthetic": "ehrexplain.data.synthetic",
    "ehrexplain.mimic4": "ehrexplain.data.mimic4",
    "ehrexplain.demo": "ehrexplain.data.demo",
    "ehrexplain.training": "ehrexplain.data.training",
    "ehrexplain.evaluate": "ehrexplain.evaluation.metrics",
    "ehrexplain.perturbation": "ehrexplain.evaluation.perturbation",
    "ehrexplain.explanation": "ehrexplain.evaluation.explanation",
    "ehrexplain.cluster": "ehrexplain.cohort.cluster",
    "ehrexplain.global_importance": "ehrexplain.cohort.global_importance",
}


class _Alias(types.ModuleType):
    """Stands at an old path and forwards every attribute to the module's new home."""

    def __getattr__(self, name: str):
        return getattr(importlib.import_module(MOVED[self.__name__]), name)

    def __dir__(self):
        return dir(importlib.import_module(MOVED[self.__name__]))


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]}; import from there (the old path will be removed)",
                      DeprecationWarning, stacklevel=2)
        return _Alias(spec.name)

    def exec_module(self, module):
        importlib.import_module(MOVED[module.__name__])  # fail now, at import, if the new home is broken


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
