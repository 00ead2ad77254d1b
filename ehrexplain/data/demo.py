"""The one demo cohort and model that every notebook uses, built once per process.

Every notebook of the series calls :func:`demo` with the same settings, so a
number quoted in one notebook is the number in the next. Training is
deterministic for a seed and a thread count (the notebooks use one torch
thread), and the result is cached, so asking twice costs nothing.

Example:
    >>> d = demo()
    >>> d is demo(), len(d.train) + len(d.test) == len(d.cohort.samples)
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from torch import nn

from .synthetic import Cohort, make_cohort, train_demo_model

#: The series' settings: 300 synthetic patients, 30 % held out, 10 epochs.
N_PATIENTS, TEST_FRACTION, EPOCHS = 300, 0.3, 10


@dataclass(frozen=True)
class Demo:
    """A cohort, its train/held-out split and a model trained on the training part."""

    cohort: Cohort
    model: nn.Module
    train: list[int]
    test: list[int]


def demo(seed: int = 0, kind: str = "transformer") -> Demo:
    """The series' cohort and trained model for ``seed`` (cached per process).

    Args:
        seed: draws the cohort, the split and the model's initial weights.
        kind: ``"transformer"`` (the default model of the series) or ``"mlp"``.

    Example:
        >>> d = demo(seed=0)
        >>> type(d.model).__name__, d is demo(0) is demo()
        ('Transformer', True)
    """
    if kind not in ("transformer", "mlp"):
        raise ValueError(f"kind must be 'transformer' or 'mlp', got {kind!r}")
    return _demo(seed, kind)  # one cache entry however the arguments are spelled (demo() is demo(seed=0))


@lru_cache(maxsize=None)
def _demo(seed: int, kind: str) -> Demo:
    cohort, train, test = _cohort_and_split(seed)
    model = train_demo_model(cohort, kind=kind, seed=seed, epochs=EPOCHS, indices=train)
    return Demo(cohort, model, train, test)


demo.cache_clear = _demo.cache_clear  # forget the built demos (e.g. to rebuild under another thread count)


@lru_cache(maxsize=None)
def _cohort_and_split(seed: int) -> tuple[Cohort, list[int], list[int]]:
    """One cohort per seed, shared by the Transformer and the MLP."""
    cohort = make_cohort(n_patients=N_PATIENTS, seed=seed)
    return (cohort, *cohort.split(TEST_FRACTION, seed=seed))
