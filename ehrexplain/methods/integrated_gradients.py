"""Integrated Gradients: average gradients along the straight path from a baseline.

Paper: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
ICML 2017. https://arxiv.org/abs/1703.01365

For input ``x``, baseline ``b`` and target logit ``f``::

    IG_i(x) = (x_i - b_i) * ∫_0^1 ∂f(b + α (x - b)) / ∂x_i dα

Algorithm:
    1. Embed token features (ids cannot be interpolated); continuous ones stay raw.
    2. Fix the target class once, from the unperturbed input.
    3. Build every path point ``b + α_k (x - b)`` for all samples at once and run
       them through the model in chunks of ``internal_batch_size`` rows (by default
       as many as hold ``PASS_TOKENS`` input values, ``_chunking``).
    4. Weight each point's gradient by the quadrature weight ``w_k`` and sum.
    5. Multiply by ``x - b`` and sum over the embedding dimension.

Invariant (completeness): ``Σ_i IG_i = f(x) - f(b)`` exactly for the true
integral; the quadrature leaves an error, the *convergence delta*, which
shrinks as ``steps`` grows. It is reported, never rescaled away.

To a tolerance (``attribute(tolerance=1e-3)``), each patient climbs nested
Clenshaw–Curtis rules until its delta meets the bound (``_ig_tolerance``, the
engine; ``bench/bench_ig_tolerance.py`` compares the time with Captum's fixed steps).
"""

from __future__ import annotations

import math

import torch

from ..core.exceptions import ConvergenceWarning
from ..core.model_state import evaluation_mode, gradients_enabled
from ..core.validation import Option
from ._base import Interpreter, TargetIndex
from ._chunking import AUTO, INTERNAL_BATCH_SIZE, PASS_ROWS, PASS_TOKENS, pass_rows, tokens_per_row
from ._embedding_space import AttributionSpace, check_embedding_support, convergence_delta, embedding_support
from ._ig_tolerance import DEFAULT_MAX_STEPS, GAP_FLOOR, adaptive_path, checked_levels
from ._path_points import path_chunks, targets_and_gap
from ._quadrature import ALPHA_RULES, MAX_STEPS, alpha_grid
from .registry import register_method


@register_method(
    "integrated_gradients", label="Integrated Gradients", signed=True, class_specific=True, uses_baseline=True,
    has_delta=True, needs_gradients=True, needs_attention=False, supports=embedding_support,
    options=(
        Option("use_embeddings", bool, True, "init"),
        Option("steps", int, 50, "both", bounds=(1, math.inf), optional=True),
        Option("alpha_rule", str, "pyhealth", "both", choices=ALPHA_RULES, optional=True),
        Option("return_convergence_delta", bool, False),
        INTERNAL_BATCH_SIZE,
        Option("return_steps", bool, False),
    ),
)
class IntegratedGradients(Interpreter):
    """Integrated Gradients for PyHealth models, batched along the path.

    Same call as PyHealth's ``IntegratedGradients`` plus ``return_convergence_delta``,
    ``internal_batch_size``, ``alpha_rule`` and ``tolerance``. Works inside
    ``torch.no_grad()``; never touches parameter ``.grad``; restores the model's train/eval mode.

    Args:
        model: a PyHealth model (``forward_from_embedding`` and
            ``get_embedding_model`` needed when ``use_embeddings``).
        use_embeddings: interpolate token features in embedding space (needed for codes).
        steps: default number of steps.
        alpha_rule: ``"pyhealth"`` (default, PyHealth's grid), ``"gauss_legendre"``
            or ``"clenshaw_curtis"``.

    Example:
        >>> from ehrexplain import IntegratedGradients
        >>> ig = IntegratedGradients(model, steps=16)
        >>> scores, delta = ig.attribute(**batch, return_convergence_delta=True)
        >>> scores["conditions"].shape, delta.shape   # delta: quadrature error per sample, in logits
        (torch.Size([8, 11]), torch.Size([8]))
        >>> unk = {**batch, **{key: (batch[key] != 0).long() for key in model.feature_keys}}  # the default baseline b
        >>> gap = (model(**batch)["logit"] - model(**unk)["logit"]).squeeze(1).detach()  # f(x) - f(b)
        >>> bool((delta.abs() <= 1e-2 * gap.abs()).all())   # 16 points of PyHealth's grid: not within 1% of the gap
        False
        >>> scores, delta, steps = ig.attribute(**batch, tolerance=1e-2, return_convergence_delta=True,
        ...                                     return_steps=True)   # refined per patient until |δ| <= 1% of the gap
        >>> bool((delta.abs() <= 1e-2 * gap.abs()).all()), bool((steps <= 257).all())   # within max_steps
        (True, True)
    """

    def __init__(self, model, use_embeddings: bool = True, steps: int = 50, alpha_rule: str = "pyhealth"):
        if use_embeddings:
            check_embedding_support(model, "IntegratedGradients")
        alpha_grid(steps, alpha_rule)  # validates both arguments early
        super().__init__(model)
        self.use_embeddings = use_embeddings
        self.steps = steps
        self.alpha_rule = alpha_rule

    def attribute(
        self,
        baseline: dict[str, torch.Tensor] | None = None,
        steps: int | None = None,
        target_class_idx: TargetIndex = None,
        return_convergence_delta: bool = False,
        internal_batch_size: int | str | None = AUTO,
        alpha_rule: str | None = None,
        tolerance: float | None = None,
        max_steps: int | None = None,
        return_steps: bool = False,
        **data,
    ):
        """Attributions shaped like each feature's raw values.

        Args:
            baseline: per feature key, a tensor shaped like the input values
                (token ids or raw numbers); missing keys get the default.
            steps, alpha_rule: override the constructor's choice.
            target_class_idx: class to explain (int or ``[batch]``); default: predicted.
            return_convergence_delta: also return ``Σ attributions - (f(x) - f(b))``
                per sample, in logits.
            internal_batch_size: rows (path points × samples) per forward pass. ``"auto"``
                (default): as many as hold ``PASS_TOKENS`` (16,384) input values, at most
                ``PASS_ROWS`` (1024), so memory follows the records' length; ``None`` runs
                the whole path at once (fastest on a GPU with memory to spare).
            tolerance: refine each patient until ``|δ| <= tolerance × max(|f(x) - f(b)|,
                GAP_FLOOR)`` on nested Clenshaw–Curtis rules (instead of ``steps``).
                Patients still above it at ``max_steps`` keep the rule with their
                smallest ``|δ|`` and a :class:`ConvergenceWarning` says how many.
            max_steps: most path points per patient with ``tolerance`` (default 257).
                ``steps`` and ``max_steps`` above ``MAX_STEPS`` (4097), and a ``tolerance``
                call whose scores per path point, patient and value would exceed
                ``MAX_STORED_SCORES``, are refused before anything is allocated.
            return_steps: also return a ``[batch]`` LongTensor: the path points
                each patient's scores use.

        Returns:
            ``{key: scores}``, then ``delta`` if ``return_convergence_delta``, then
            ``steps`` if ``return_steps``, as a tuple when more than the scores.
        """
        levels = checked_levels(tolerance, max_steps, steps, alpha_rule)
        if levels is None:
            alphas, weights = alpha_grid(self.steps if steps is None else steps, alpha_rule or self.alpha_rule)
        with evaluation_mode(self.model, self._call.tree), gradients_enabled():
            space = AttributionSpace.build(self.model, data, baseline, self.use_embeddings, self._call.dtype)
            resolve = self._targets
            chunk_rows = pass_rows(internal_batch_size, tokens_per_row(space.batch.values))
            if levels is None:
                targets, gap = targets_and_gap(space, resolve, with_gap=return_convergence_delta)
                scores, delta, used = _fixed_path(space, alphas, weights, targets, gap, chunk_rows)
            else:
                scores, delta, used = adaptive_path(space, resolve, tolerance, levels, chunk_rows)
        extras = (delta,) * return_convergence_delta + (used,) * return_steps
        return (scores, *extras) if extras else scores


def _fixed_path(space, alphas, weights, targets, gap, chunk_rows):
    """Scores, δ (``None`` without ``gap``) and points used, one rule for every patient."""
    mean_grads = _path_gradients(space, alphas, weights, targets, chunk_rows)
    raw = {key: (space.inputs[key] - space.baselines[key]) * mean_grads[key] for key in space.inputs}
    scores = space.to_raw_shapes(raw)
    delta = None if gap is None else convergence_delta(scores, gap)
    return scores, delta, torch.full_like(targets, len(alphas))


def _path_gradients(space, alphas, weights, targets, chunk_rows):
    """``Σ_k w_k ∇f(b + α_k (x - b))`` per sample, all path points batched."""
    device = targets.device
    batch = space.batch_size
    alphas, weights = alphas.to(device, space.dtype), weights.to(device, space.dtype)
    point_alpha = alphas.repeat_interleave(batch)  # row r is path point r // batch ...
    point_weight = weights.repeat_interleave(batch)
    point_sample = torch.arange(batch, device=device).repeat(len(alphas))  # ... of sample r % batch
    total = {key: torch.zeros_like(x) for key, x in space.inputs.items()}
    for part, rows, grads, _, _ in path_chunks(space, point_alpha, point_sample, targets, chunk_rows):
        weight = point_weight[part]
        for key, grad in grads.items():
            total[key].index_add_(0, rows, grad * weight.view((-1,) + (1,) * (grad.dim() - 1)))
    return total


__all__ = ["IntegratedGradients", "ConvergenceWarning", "DEFAULT_MAX_STEPS", "GAP_FLOOR", "MAX_STEPS", "PASS_ROWS", "PASS_TOKENS"]
