"""Quadrature rules for the Integrated Gradients path integral ``∫_0^1 g(α) dα``.

Each rule gives nodes ``α_k`` on ``[0, 1]`` and weights ``w_k`` summing to 1.
Clenshaw–Curtis rules with 2, 3, 5, 9, ... points are nested (each holds every
node of the one before), which lets ``IntegratedGradients(tolerance=...)``
refine a patient's integral without discarding a gradient.

Example:
    >>> alphas, weights = alpha_grid(3, "clenshaw_curtis")  # Simpson's rule
    >>> alphas.tolist(), (6 * weights).round().tolist()
    ([0.0, 0.5, 1.0], [1.0, 4.0, 1.0])
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

ALPHA_RULES = ("pyhealth", "gauss_legendre", "clenshaw_curtis")
#: Most ``steps`` (path points per patient) a rule is built for, and ``max_steps``:
#: the nested Clenshaw–Curtis rule with ``2**12 + 1`` points (kinked integrands, e.g.
#: an MLP's ReLUs, may need it). Gauss–Legendre and Clenshaw–Curtis build a matrix of
#: ``steps × steps`` entries (134 MB, and for Gauss–Legendre tens of seconds, at this
#: limit), and ``steps=10**9`` would allocate 8 GB for the nodes alone.
MAX_STEPS = 2**12 + 1


def alpha_grid(steps: int, rule: str = "pyhealth") -> tuple[torch.Tensor, torch.Tensor]:
    """Path positions ``α_k`` and weights ``w_k`` (summing to 1) for ``steps``.

    ``"pyhealth"``: ``α_k = k / steps`` for ``k = 0..steps``, equal weights
    ``1 / (steps + 1)`` (PyHealth 2.1's grid, for exact comparison).
    ``"gauss_legendre"``: ``steps`` Gauss–Legendre nodes on ``[0, 1]``; exact for
    polynomials of degree ``2 steps - 1``, so far fewer steps reach a small delta.
    ``"clenshaw_curtis"``: ``steps >= 2`` points ``(1 - cos(π j / (steps - 1))) / 2``,
    both ends included; exact up to degree ``steps - 1``, and the rule with
    ``2 steps - 1`` points contains every point of this one (used by ``tolerance``).

    Example:
        >>> alphas, weights = alpha_grid(2)
        >>> alphas.tolist(), round(weights.sum().item(), 6)
        ([0.0, 0.5, 1.0], 1.0)
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    check_points("steps", steps, steps + (rule == "pyhealth"))
    if rule == "pyhealth":
        alphas = torch.arange(steps + 1, dtype=torch.float64) / steps
        return alphas, torch.full_like(alphas, 1.0 / (steps + 1))
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return torch.from_numpy((nodes + 1) / 2), torch.from_numpy(weights / 2)
    if rule == "clenshaw_curtis":
        return clenshaw_curtis(steps)
    raise ValueError(f"unknown alpha_rule {rule!r}; choose one of {ALPHA_RULES}")


def check_points(option: str, value: int, points: int) -> None:
    """``ValueError`` before any allocation when ``option=value`` asks for more than :data:`MAX_STEPS` path points.

    Example:
        >>> check_points("steps", 10**9, 10**9 + 1)
        Traceback (most recent call last):
        ...
        ValueError: steps=1000000000 would build 1,000,000,001 path points (quadrature nodes) per patient; the limit is MAX_STEPS = 4,097 ...
    """
    if value > MAX_STEPS:
        raise ValueError(
            f"{option}={value} would build {points:,} path points (quadrature nodes) per patient; the limit is "
            f"MAX_STEPS = {MAX_STEPS:,} (ehrexplain.methods._quadrature). Far fewer suffice: Gauss–Legendre steps are "
            "exact for polynomials of degree 2 steps - 1, and tolerance=1e-3 stops at 257 points by default"
        )


def clenshaw_curtis(points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clenshaw–Curtis nodes and weights on ``[0, 1]`` (Waldvogel's closed form)."""
    if points < 2:
        raise ValueError(f"alpha_rule 'clenshaw_curtis' needs steps >= 2 (both path ends), got {points}")
    alphas, weights = _clenshaw_curtis(points)
    return torch.from_numpy(alphas.copy()), torch.from_numpy(weights.copy())


@lru_cache(maxsize=32)
def _clenshaw_curtis(points: int) -> tuple[np.ndarray, np.ndarray]:
    """The rule as (read-only, cached) arrays: ``tolerance`` asks for the same few rules on every call."""
    n = points - 1
    j = np.arange(points)
    theta = j * np.pi / n
    k = np.arange(1, n // 2 + 1)
    b = np.where(2 * k == n, 1.0, 2.0)
    ends = np.where((j == 0) | (j == n), 1.0, 2.0)
    weights = ends / n * (1 - (b / (4 * k**2 - 1)) @ np.cos(2 * np.outer(k, theta)))
    # (1 - cos θ) / 2, written so that the nodes are exactly symmetric about 1/2
    low = np.sin(theta / 2) ** 2
    alphas = np.where(2 * j < n, low, 1 - low[::-1])
    alphas[2 * j == n] = 0.5
    weights = weights / 2
    alphas.flags.writeable = weights.flags.writeable = False
    return alphas, weights


def nested_steps(max_steps: int) -> list[int]:
    """Point counts of the nested Clenshaw–Curtis rules tried by ``tolerance``: 2, 3, 5, 9, ...

    Example:
        >>> nested_steps(20)
        [2, 3, 5, 9, 17]
    """
    levels = [2]
    while 2 * levels[-1] - 1 <= max_steps:
        levels.append(2 * levels[-1] - 1)
    return levels
