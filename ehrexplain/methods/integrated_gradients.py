"""Integrated Gradients: average gradients along the straight path from a baseline.

Paper: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
ICML 2017. https://arxiv.org/abs/1703.01365

For input ``x``, baseline ``b`` and target logit ``f``::

    IG_i(x) = (x_i - b_i) * ∫_0^1 ∂f(b + α (x - b)) / ∂x_i dα

Algorithm:
    1. Embed token features (ids cannot be interpolated); continuous ones stay raw.
    2. Fix the target class once, from the unperturbed input.
    3. Build every path point ``b + α_k (x - b)`` for all samples at once and run
       them through the model in chunks of ``internal_batch_size`` rows.
    4. Weight each point's gradient by the quadrature weight ``w_k`` and sum.
    5. Multiply by ``x - b`` and sum over the embedding dimension.

Invariant (completeness): ``Σ_i IG_i = f(x) - f(b)`` exactly for the true
integral; the quadrature leaves an error, the *convergence delta*, which
shrinks as ``steps`` grows. It is reported, never rescaled away.

To a tolerance (``attribute(tolerance=1e-3)``): since ``f(x) - f(b)`` is
computed exactly, the delta *is* the completeness error, not an estimate of it.
Each patient climbs nested Clenshaw–Curtis rules with 2, 3, 5, 9, 17, ...
points (each rule reuses every gradient of the one before and adds as many new
points) until ``|δ| <= tolerance × max(|f(x) - f(b)|, GAP_FLOOR)``; patients
that meet it stop, the others go on, up to ``max_steps`` points. A patient's
result depends only on its own path, so a batch gives what each patient gets
alone. Patients that never meet the bound keep the rule with their smallest
``|δ|`` and a :class:`ConvergenceWarning` names how many and the worst relative
delta. Kinks (ReLU) and near-singular points (layer norm of an all-padding
input) slow every polynomial rule; ``bench/bench_ig_tolerance.py`` compares the
cost with Captum's fixed steps.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from ..model_state import evaluation_mode, gradients_enabled
from ._base import Interpreter, TargetIndex
from ._embedding_space import AttributionSpace, check_embedding_support, convergence_delta, sample_totals, target_logit
from ._quadrature import alpha_grid, clenshaw_curtis, nested_steps

#: Most path points per patient with ``tolerance`` unless ``max_steps`` says otherwise.
DEFAULT_MAX_STEPS = 257
#: Logit gaps ``|f(x) - f(b)|`` below this count as this much when scaling the
#: tolerance: a patient whose input barely moves the logit must still get
#: ``|δ| <= tolerance × 0.01`` logits (a relative bound on a near-zero gap would be
#: unreachable in float32).
GAP_FLOOR = 1e-2
#: With ``tolerance``, the first model pass evaluates all nodes of the rules with
#: up to this many points (2, 3, 5, 9, 17 share them), saving four small passes: on
#: the demo Transformer most patients need 17 or 33 points, and on a CPU a pass's
#: fixed cost outweighs the few points a smaller first pass would save (``make bench``).
FIRST_PASS_STEPS = 17

#: Default rows (path points × samples) per forward/backward pass. Bounds memory
#: and, on CPU, is faster than one huge pass (see ``make bench``).
DEFAULT_CHUNK_ROWS = 1024


class ConvergenceWarning(UserWarning):
    """Some patients did not reach the tolerance within ``max_steps`` path points."""


def _checked_levels(tolerance, max_steps, steps, alpha_rule) -> list[int] | None:
    """The rules to climb for ``tolerance`` (``None``: fixed steps), arguments checked."""
    if tolerance is None:
        if max_steps is not None:
            raise ValueError("max_steps only applies together with tolerance=...")
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise TypeError(f"tolerance must be a positive real number, got {type(tolerance).__name__} {tolerance!r}")
    if not math.isfinite(tolerance) or tolerance <= 0:
        raise ValueError(f"tolerance must be a positive finite number, got {tolerance!r}")
    if steps is not None or alpha_rule is not None:
        raise ValueError("tolerance picks each patient's steps on nested Clenshaw–Curtis rules; drop steps=/alpha_rule=")
    max_steps = DEFAULT_MAX_STEPS if max_steps is None else max_steps
    if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral):
        raise TypeError(f"max_steps must be an integer, got {type(max_steps).__name__} {max_steps!r}")
    if max_steps < 2:
        raise ValueError(f"max_steps must be >= 2 (the smallest nested rule uses both path ends), got {max_steps}")
    return nested_steps(int(max_steps))


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
        >>> # ig = IntegratedGradients(model, steps=50)
        >>> # scores, delta = ig.attribute(**batch, return_convergence_delta=True)
        >>> # delta.abs().max()  # quadrature error per sample, in logits
        >>> # scores, steps = ig.attribute(**batch, tolerance=1e-3, return_steps=True)
    """

    signed_scores = True

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
        internal_batch_size: int | None = DEFAULT_CHUNK_ROWS,
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
            internal_batch_size: rows (path points × samples) per forward pass,
                1024 by default; ``None`` runs the whole path at once (fastest on a
                GPU with memory to spare).
            tolerance: refine each patient until ``|δ| <= tolerance × max(|f(x) - f(b)|,
                GAP_FLOOR)`` on nested Clenshaw–Curtis rules (instead of ``steps``).
                Patients still above it at ``max_steps`` keep the rule with their
                smallest ``|δ|`` and a :class:`ConvergenceWarning` says how many.
            max_steps: most path points per patient with ``tolerance`` (default 257).
            return_steps: also return a ``[batch]`` LongTensor: the path points
                each patient's scores use.

        Returns:
            ``{key: scores}``, then ``delta`` if ``return_convergence_delta``, then
            ``steps`` if ``return_steps``, as a tuple when more than the scores.
        """
        levels = _checked_levels(tolerance, max_steps, steps, alpha_rule)
        if levels is None:
            alphas, weights = alpha_grid(self.steps if steps is None else steps, alpha_rule or self.alpha_rule)
        if internal_batch_size is not None and (not isinstance(internal_batch_size, int) or internal_batch_size < 1):
            raise ValueError(f"internal_batch_size must be a positive integer or None, got {internal_batch_size!r}")
        with evaluation_mode(self.model), gradients_enabled():
            space = AttributionSpace.build(self.model, data, baseline, self.use_embeddings)
            need_gap = levels is not None or return_convergence_delta
            with torch.no_grad():  # f(x), and f(b) in the same pass when the gap is needed
                points = {k: torch.cat([x, space.baselines[k]]) for k, x in space.inputs.items()} if need_gap else space.inputs
                both = space.forward(points, space.rows.repeat(2 if need_gap else 1))
                logits = both[: space.batch_size]
                targets = self._resolve_target_indices(logits, target_class_idx)
                gap = target_logit(logits, targets) - target_logit(both[space.batch_size :], targets) if need_gap else None
            if levels is None:
                scores, delta, used = _fixed_path(space, alphas, weights, targets, gap, internal_batch_size)
            else:
                scores, delta, used = _adaptive_path(space, targets, gap, tolerance, levels, internal_batch_size)
        extras = (delta,) * return_convergence_delta + (used,) * return_steps
        return (scores, *extras) if extras else scores


def _fixed_path(space, alphas, weights, targets, gap, chunk_rows):
    """Scores, δ (``None`` without ``gap``) and points used, one rule for every patient."""
    mean_grads = _path_gradients(space, alphas, weights, targets, chunk_rows)
    raw = {key: (space.inputs[key] - space.baselines[key]) * mean_grads[key] for key in space.inputs}
    scores = space.to_raw_shapes(raw)
    delta = None if gap is None else convergence_delta(scores, gap)
    return scores, delta, torch.full_like(targets, len(alphas))


def _adaptive_path(space, targets, gap, tolerance, levels, chunk_rows):
    """Scores, δ and points used per patient, climbing nested rules until ``|δ|`` meets the bound.

    Gradients are kept per (node, patient) as ``(x - b)·∇f`` summed to raw
    shape, so a finer rule only evaluates its new nodes, for unfinished patients.
    The first pass evaluates the nodes of every rule up to ``FIRST_PASS_STEPS``
    at once (one model pass instead of four), then checks those rules in turn.
    """
    finest, device = levels[-1], gap.device
    bound = tolerance * gap.abs().clamp_min(GAP_FLOOR)
    shapes = {key: value.shape for key, value in space.batch.values.items()}
    # per key, [evaluated node, patient, ...raw shape] products; `row` maps a finest-rule node index to its row
    stored = {key: torch.zeros((0,) + shape, device=device) for key, shape in shapes.items()}
    row: dict[int, int] = {}
    best = {key: torch.zeros(shape, device=device) for key, shape in shapes.items()}
    best_delta, used = torch.full_like(gap, float("inf")), torch.zeros_like(targets)
    active = space.rows
    for points in levels:
        nodes = list(range(0, finest, (finest - 1) // (points - 1)))  # this rule's nodes on the finest rule
        if not row.keys() >= set(nodes):
            last = max(points, min(FIRST_PASS_STEPS, finest)) if not row else points
            new = [j for j in range(0, finest, (finest - 1) // (last - 1)) if j not in row]
            products = _node_products(space, clenshaw_curtis(finest)[0][new], active, targets, chunk_rows)
            for key, shape in shapes.items():
                block = torch.zeros((len(new),) + shape, device=device)
                if key in products:  # a key the target ignores keeps zero products
                    block[:, active] = products[key]
                stored[key] = torch.cat([stored[key], block])
            row.update({j: len(row) + i for i, j in enumerate(new)})
        weights = clenshaw_curtis(points)[1].to(device, torch.float32)
        index = torch.tensor([row[j] for j in nodes], device=device)
        scores = {key: torch.tensordot(weights, stored[key][index][:, active], dims=1) for key in shapes}
        delta = sample_totals(scores) - gap[active]
        better = delta.abs() <= best_delta[active].abs()
        for key in shapes:
            best[key][active[better]] = scores[key][better]
        best_delta[active[better]], used[active[better]] = delta[better], points
        active = active[delta.abs() > bound[active]]
        if len(active) == 0:
            break
    if len(active):
        worst = (best_delta[active].abs() / gap[active].abs().clamp_min(GAP_FLOOR)).max().item()
        warnings.warn(
            f"{len(active)} of {len(gap)} patients did not reach tolerance {tolerance:g} within {finest} path points "
            f"(worst relative delta {worst:.3g}); they keep the rule with their smallest |delta| "
            "(returned with return_convergence_delta=True). Raise max_steps, or check the model for kinks.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return best, best_delta, used


def _node_products(space, alphas, rows, targets, chunk_rows):
    """``{key: [len(alphas), len(rows), ...raw shape]}``: ``(x - b)·∇f(b + α (x - b))`` per raw value."""
    n_rows = len(rows)
    point_alpha = alphas.to(rows.device, torch.float32).repeat_interleave(n_rows)
    point_sample = rows.repeat(len(alphas))
    products = {}
    for part, sample, grads in _path_chunks(space, point_alpha, point_sample, targets, chunk_rows):
        raw = space.to_raw_shapes(
            {key: (space.inputs[key][sample] - space.baselines[key][sample]) * grad for key, grad in grads.items()}
        )
        for key, product in raw.items():
            if key not in products:
                products[key] = torch.zeros((len(point_sample),) + product.shape[1:], device=rows.device)
            products[key][part] = product
    return {key: value.reshape((len(alphas), n_rows) + value.shape[1:]) for key, value in products.items()}


def _path_gradients(space, alphas, weights, targets, chunk_rows):
    """``Σ_k w_k ∇f(b + α_k (x - b))`` per sample, all path points batched."""
    device = targets.device
    batch = space.batch_size
    alphas, weights = alphas.to(device, torch.float32), weights.to(device, torch.float32)
    point_alpha = alphas.repeat_interleave(batch)  # row r is path point r // batch ...
    point_weight = weights.repeat_interleave(batch)
    point_sample = torch.arange(batch, device=device).repeat(len(alphas))  # ... of sample r % batch
    total = {key: torch.zeros_like(x) for key, x in space.inputs.items()}
    for part, rows, grads in _path_chunks(space, point_alpha, point_sample, targets, chunk_rows):
        weight = point_weight[part]
        for key, grad in grads.items():
            total[key].index_add_(0, rows, grad * weight.view((-1,) + (1,) * (grad.dim() - 1)))
    return total


def _path_chunks(space, point_alpha, point_sample, targets, chunk_rows):
    """Per chunk of ``chunk_rows`` path points: ``(slice, samples, {key: ∇f at b + α (x - b)})``."""
    chunk_rows = chunk_rows or len(point_sample)
    for start in range(0, len(point_sample), chunk_rows):
        part = slice(start, start + chunk_rows)
        rows, alpha = point_sample[part], point_alpha[part]
        points = {}
        for key, x in space.inputs.items():
            b = space.baselines[key][rows]
            shape = (-1,) + (1,) * (x.dim() - 1)
            points[key] = (b + alpha.view(shape) * (x[rows] - b)).requires_grad_(True)
        output = target_logit(space.forward(points, rows), targets[rows]).sum()
        grads = torch.autograd.grad(output, list(points.values()), allow_unused=True)
        yield part, rows, {key: grad for key, grad in zip(points, grads) if grad is not None}
