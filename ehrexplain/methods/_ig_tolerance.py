"""Integrated Gradients to a tolerance: each patient climbs nested Clenshaw–Curtis rules.

Since ``f(x) - f(b)`` is computed exactly, the convergence delta *is* the
completeness error, not an estimate of it. Each patient climbs nested rules with
2, 3, 5, 9, 17, ... points (each rule reuses every gradient of the one before
and adds as many new points) until ``|δ| <= tolerance × max(|f(x) - f(b)|, GAP_FLOOR)``;
patients that meet it stop, the others go on, up to ``max_steps`` points. A
patient's result depends only on its own path, so a batch gives what each
patient gets alone. Patients that never meet the bound keep the rule with their
smallest ``|δ|`` and a :class:`ConvergenceWarning` names how many and the worst
relative delta. Kinks (ReLU) and near-singular points (layer norm of an
all-padding input) slow every polynomial rule.

Cost: the first model pass holds every node of the rules up to 17 points, path
ends included, so it also gives ``f(x)``, ``f(b)`` and the targets; each later
pass adds the next rule's nodes for the patients still above the bound (and the
rule after it for the few whose ``|δ|`` shrinks too slowly, which saves a pass
without changing any result). :data:`PASSES` records the rows of every pass.

Example:
    >>> with PASSES.listen() as passes:
    ...     pass  # IntegratedGradients(model).attribute(**batch, tolerance=1e-3)
    >>> passes  # one entry (rows) per model pass made inside the block
    []
"""

from __future__ import annotations

import math
import numbers
import threading
import warnings
from contextlib import contextmanager
from typing import Iterator

import torch

from ..core.exceptions import ConvergenceWarning
from ._chunking import tokens_per_row
from ._embedding_space import convergence_delta
from ._path_points import path_chunks, targets_and_gap
from ._quadrature import check_points, clenshaw_curtis, nested_steps

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
#: A later pass also evaluates the rule after the next one for patients likely to
#: need it, if that adds at most this many path points: on a CPU, a model pass's
#: fixed cost (Python, small kernels) is about that of 150 points of the demo
#: Transformer, so a short extra pass costs more than a few points evaluated early.
SPECULATIVE_POINTS = 128


class PassLog:
    """Rows (path points) of every model pass the tolerance engine makes, for whoever listens.

    The engine records each pass itself; tests and ``bench/bench_ig_tolerance.py``
    listen through :func:`ehrexplain.testing.tolerance_passes`.
    """

    def __init__(self):
        self._listeners: list[list[int]] = []
        self._lock = threading.Lock()

    @contextmanager
    def listen(self) -> Iterator[list[int]]:
        """A list that receives the rows of each pass made while the block runs."""
        rows: list[int] = []
        with self._lock:
            self._listeners.append(rows)
        try:
            yield rows
        finally:
            with self._lock:
                self._listeners.remove(rows)

    def record(self, rows: int) -> None:
        with self._lock:
            for listener in self._listeners:
                listener.append(rows)


#: The engine's pass counter.
PASSES = PassLog()

#: Most scores (float32) the tolerance engine may keep: one per path point, patient and
#: input value, for every node a patient may reach (1 GiB at the limit).
MAX_STORED_SCORES = 2**28


def check_store(space, finest: int) -> None:
    """``ValueError`` before the engine allocates, when its scores for ``finest`` points would exceed the limit.

    Example:
        >>> from ehrexplain.methods._embedding_space import AttributionSpace
        >>> space = AttributionSpace.build(model, batch, baseline=None, use_embeddings=True)  # 8 patients, 20 values
        >>> check_store(space, 2049)       # 2,049 × 8 × 20 = 327,840 scores: allowed, nothing returned
        >>> check_store(space, 2**21)      # 335,544,320 scores > MAX_STORED_SCORES: refused
        Traceback (most recent call last):
        ...
        ValueError: tolerance=... keeps one score per path point, patient and input value: up to 2,097,152 ...
    """
    per_patient = tokens_per_row(space.batch.values)
    scores = finest * space.batch_size * per_patient
    if scores > MAX_STORED_SCORES:
        raise ValueError(
            f"tolerance=... keeps one score per path point, patient and input value: up to {finest:,} path points "
            f"(max_steps) × {space.batch_size:,} patients × {per_patient:,} input values = {scores:,} scores "
            f"({4 * scores / 2**30:.1f} GiB); "
            f"the limit is MAX_STORED_SCORES = {MAX_STORED_SCORES:,} (ehrexplain.methods._ig_tolerance): "
            "lower max_steps or pass fewer patients per call"
        )


def checked_levels(tolerance, max_steps, steps, alpha_rule) -> list[int] | None:
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
    levels = nested_steps(int(max_steps))
    check_points("max_steps", int(max_steps), levels[-1])
    return levels


class NodeStore:
    """Per Clenshaw–Curtis node and patient: ``(x - b)·∇f`` per raw value, and its total.

    Nodes are numbered on the finest rule; a coarser rule's nodes are every
    ``k``-th of them, so each rule reuses what the coarser ones evaluated.
    ``level[p]`` is the finest rule whose nodes are all evaluated for patient ``p``.
    """

    def __init__(self, space, finest: int):
        self.finest, self.dtype, device = finest, space.dtype, space.rows.device
        self.alphas = clenshaw_curtis(finest)[0]
        self.row: dict[int, int] = {}  # node -> index of its row in `products` and `totals`
        shapes = {key: value.shape for key, value in space.batch.values.items()}
        self.products = {key: torch.zeros((0,) + shape, dtype=self.dtype, device=device) for key, shape in shapes.items()}
        self.totals = torch.zeros(0, space.batch_size, dtype=torch.float64, device=device)
        self.level = torch.zeros(space.batch_size, dtype=torch.long, device=device)

    def nodes(self, points: int) -> list[int]:
        return list(range(0, self.finest, (self.finest - 1) // (points - 1)))

    def new_nodes(self, points: int) -> list[int]:
        """Nodes of the ``points`` rule that the next coarser rule lacks (all of them for the 2-point rule)."""
        coarser = set(self.nodes((points + 1) // 2)) if points > 2 else set()
        return [j for j in self.nodes(points) if j not in coarser]

    def add(self, nodes: list[int], patients: torch.Tensor, products: dict[str, torch.Tensor], points: int) -> None:
        """Store ``products`` (``[len(nodes), len(patients), ...]`` per key) for the ``points`` rule's ``nodes``."""
        fresh = [j for j in nodes if j not in self.row]
        self.row.update({j: len(self.row) + i for i, j in enumerate(fresh)})

        def grow(stored: torch.Tensor) -> torch.Tensor:  # zero rows for the fresh nodes
            return torch.cat([stored, stored.new_zeros((len(fresh),) + stored.shape[1:])])

        self.products = {key: grow(stored) for key, stored in self.products.items()}
        self.totals = grow(self.totals)
        cells = (self.rows(nodes)[:, None], patients[None, :])
        for key, product in products.items():  # a key the target ignores keeps zero products
            self.products[key][cells] = product
        self.totals[cells] = sum(p.reshape(p.shape[:2] + (-1,)).sum(-1, dtype=torch.float64) for p in products.values())
        self.level[patients] = points

    def rows(self, nodes: list[int]) -> torch.Tensor:
        return torch.tensor([self.row[j] for j in nodes], device=self.level.device)

    def rule_sums(self, points: int, patients: torch.Tensor) -> torch.Tensor:
        """``Σ_k w_k (x - b)·∇f(α_k)`` on the ``points`` rule: each patient's attributions summed."""
        weights = torch.as_tensor(clenshaw_curtis(points)[1], device=patients.device)
        return weights @ self.totals[self.rows(self.nodes(points))][:, patients]

    def scores(self, rule: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each patient's attributions on its own rule (``rule[p]`` points)."""
        out = {key: torch.zeros(stored.shape[1:], dtype=self.dtype, device=rule.device) for key, stored in self.products.items()}
        for points in rule.unique().tolist():
            chosen = (rule == points).nonzero().squeeze(1)
            weights = clenshaw_curtis(points)[1].to(rule.device, self.dtype)
            cells = (self.rows(self.nodes(points))[:, None], chosen[None, :])
            for key, stored in self.products.items():
                out[key][chosen] = torch.tensordot(weights, stored[cells], dims=1)
        return out


def adaptive_path(space, resolve, tolerance, levels, chunk_rows):
    """Scores, δ and points used per patient, climbing nested rules until ``|δ|`` meets the bound.

    The first model pass evaluates the nodes of every rule up to
    ``FIRST_PASS_STEPS`` at once, path ends first: ``α = 1`` is the input, so the
    same pass gives the targets (from ``f(x)``) and the gap ``f(x) - f(b)``. Each
    later pass evaluates the next rule's new nodes for the unfinished patients,
    and the rule after it for those whose ``|δ|`` shrinks too slowly to meet the
    bound with the next one, when they are few (:func:`_likely_short`). That only
    saves a pass: every patient still gets the smallest rule that meets the bound.
    """
    check_store(space, levels[-1])
    store = NodeStore(space, levels[-1])
    batch, rows = space.batch_size, space.rows
    first_rule = max(p for p in levels if p <= FIRST_PASS_STEPS)
    first = [store.finest - 1, 0] + store.nodes(first_rule)[1:-1]  # x, then b, then the inner nodes
    if chunk_rows is None or chunk_rows >= batch:  # the first chunk holds f(x) of every patient
        targets, gap = resolve, None
    else:
        targets, gap = targets_and_gap(space, resolve, with_gap=True)
    logits, targets = _evaluate(space, store, targets, chunk_rows, [(first, rows, first_rule)])
    gap = (logits[:batch] - logits[batch : 2 * batch] if gap is None else gap).to(torch.float64)
    bound = tolerance * gap.abs().clamp_min(GAP_FLOOR)
    rule = torch.zeros_like(targets)
    best = torch.full_like(gap, float("inf"))  # each patient's smallest |δ| so far
    last = torch.full_like(gap, float("inf"))  # |δ| of the last rule checked, and of the one before it
    before_last = last.clone()
    active = rows
    for i, points in enumerate(levels):
        need = active[store.level[active] < points]
        if len(need):
            requests = [(store.new_nodes(points), need, points)]
            if i + 1 < len(levels):  # and the rule after it, for the patients likely to need it
                after = store.new_nodes(levels[i + 1])
                ahead = _likely_short(last[need], before_last[need], bound[need], len(after))
                requests.append((after, need[ahead], levels[i + 1]))
            _evaluate(space, store, targets, chunk_rows, requests)
        delta = (store.rule_sums(points, active) - gap[active]).abs()
        before_last[active], last[active] = last[active], delta
        better = delta <= best[active]
        best[active[better]], rule[active[better]] = delta[better], points
        active = active[delta > bound[active]]
        if len(active) == 0:
            break
    scores = store.scores(rule)
    delta = convergence_delta(scores, gap.to(space.dtype))
    if len(active):
        worst = (best[active] / gap[active].abs().clamp_min(GAP_FLOOR)).max().item()
        warnings.warn(
            f"{len(active)} of {batch} patients did not reach tolerance {tolerance:g} within {store.finest} path points "
            f"(worst relative delta {worst:.3g}); they keep the rule with their smallest |delta| "
            "(returned with return_convergence_delta=True). Raise max_steps, or check the model for kinks.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return scores, delta, rule


def _likely_short(delta, previous, bound, extra_nodes) -> torch.Tensor:
    """Which patients the next rule will likely leave above ``bound``, when few enough to evaluate the rule after too.

    Each finer rule has been shrinking ``|δ|`` by about ``delta / previous``; a
    patient whose ``|δ|`` would still exceed the bound after one more such step is
    likely to need the rule after. Their extra nodes (``extra_nodes`` each) join
    this pass only when they add at most ``SPECULATIVE_POINTS`` path points.
    """
    likely = delta * (delta / previous.clamp_min(torch.finfo(delta.dtype).tiny)).clamp(max=1) > bound
    if int(likely.sum()) * extra_nodes > SPECULATIVE_POINTS:
        return torch.zeros_like(likely)
    return likely


def _evaluate(space, store, targets, chunk_rows, requests):
    """One model pass for ``requests``, ``(nodes, patients, rule)`` triples; ``store`` keeps the products.

    Returns the target logit of every point (node-major, in request order) and
    the targets (``targets`` may pick them from the first chunk, see :func:`path_chunks`).
    """
    requests = [(nodes, patients, points) for nodes, patients, points in requests if len(patients)]
    point_alpha = torch.cat([store.alphas[nodes].repeat_interleave(len(patients)) for nodes, patients, _ in requests])
    point_sample = torch.cat([patients.repeat(len(nodes)) for nodes, patients, _ in requests])
    products, logits, targets = _point_products(space, point_alpha, point_sample, targets, chunk_rows)
    start = 0
    for nodes, patients, points in requests:
        size = len(nodes) * len(patients)
        part = {key: value[start : start + size].reshape((len(nodes), len(patients)) + value.shape[1:])
                for key, value in products.items()}  # fmt: skip
        store.add(nodes, patients, part, points)
        start += size
    return logits, targets


def _point_products(space, point_alpha, point_sample, targets, chunk_rows):
    """Per path point (sample ``point_sample[r]`` at ``point_alpha[r]``): ``(x - b)·∇f`` per raw value.

    Returns ``({key: [points, ...raw shape]}, target logit per point, targets)``.
    """
    PASSES.record(len(point_sample))
    point_alpha = point_alpha.to(point_sample.device, space.dtype)
    chunks, logits = [], []
    for _, sample, grads, logit, targets in path_chunks(space, point_alpha, point_sample, targets, chunk_rows):
        direction = {key: space.inputs[key][sample] - space.baselines[key][sample] for key in grads}
        chunks.append(space.to_raw_shapes({key: direction[key] * grad for key, grad in grads.items()}))
        logits.append(logit)
    products = {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}
    return products, torch.cat(logits), targets

