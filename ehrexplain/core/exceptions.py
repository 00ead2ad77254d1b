"""The warnings ehrexplain's methods raise, public in one place.

Both are ``UserWarning`` subclasses, so ``warnings.simplefilter("error", ConvergenceWarning)``
turns one into an exception without touching any other warning.

Example:
    >>> import warnings
    >>> from ehrexplain import ConvergenceWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("2 of 16 patients did not reach tolerance", ConvergenceWarning)
    >>> caught[0].category.__name__
    'ConvergenceWarning'
"""


class ConvergenceWarning(UserWarning):
    """Integrated Gradients: some patients did not reach the tolerance within ``max_steps`` path points."""


class InexactDeepLiftWarning(UserWarning):
    """DeepLift met an op it cannot attribute exactly; the convergence delta may be nonzero."""


__all__ = ["ConvergenceWarning", "InexactDeepLiftWarning"]
