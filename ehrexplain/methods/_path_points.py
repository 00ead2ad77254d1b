"""Points on Integrated Gradients' straight path, run through the model in chunks.

Shared by the fixed-step rule (``integrated_gradients``) and the tolerance engine
(``_ig_tolerance``): path point ``r`` is sample ``point_sample[r]`` at position
``point_alpha[r]``, i.e. ``b + α (x - b)``.

Example:
    >>> from ehrexplain.methods._embedding_space import AttributionSpace
    >>> space = AttributionSpace.build(model, batch, baseline=None, use_embeddings=True)
    >>> targets, gap = targets_and_gap(space, lambda logits: logits.argmax(-1), with_gap=True)
    >>> targets.tolist(), gap.shape    # one logit: class 0 for every patient
    ([0, 0, 0, 0, 0, 0, 0, 0], torch.Size([8]))
    >>> alphas, samples = torch.tensor([0.0, 1.0]).repeat_interleave(8), space.rows.repeat(2)  # b, then x, of each
    >>> chunks = list(path_chunks(space, alphas, samples, targets, 8))
    >>> [part for part, samples, grads, logits, targets in chunks], sorted(chunks[0][2])  # 2 passes; ∇f per key
    ([slice(0, 8, None), slice(8, 16, None)], ['conditions', 'drugs', 'procedures'])
    >>> ends = torch.cat([logits for part, samples, grads, logits, targets in chunks])
    >>> bool(torch.allclose(ends[8:] - ends[:8], gap, atol=1e-5))   # the path's two ends: f(x) - f(b)
    True
"""

from __future__ import annotations

import torch

from ._embedding_space import target_logit


def targets_and_gap(space, resolve, with_gap: bool):
    """Targets from ``f(x)``, and ``f(x) - f(b)`` when ``with_gap`` (``None`` otherwise), in one forward pass."""
    with torch.no_grad():
        points = {k: torch.cat([x, space.baselines[k]]) for k, x in space.inputs.items()} if with_gap else space.inputs
        logits = space.forward(points, space.rows.repeat(2 if with_gap else 1))
        targets = resolve(logits[: space.batch_size])
        if not with_gap:
            return targets, None
        f_x, f_b = logits[: space.batch_size], logits[space.batch_size :]
        return targets, target_logit(f_x, targets) - target_logit(f_b, targets)


def path_chunks(space, point_alpha, point_sample, targets, chunk_rows):
    """Per chunk of ``chunk_rows`` path points: ``(slice, samples, {key: ∇f}, target logits, targets)``.

    ``targets`` is a ``[batch]`` tensor, or a function that picks it from the
    logits of the first chunk's first ``batch`` rows, which must then be the
    inputs ``x`` of every sample in order (saves a forward pass).
    """
    chunk_rows = chunk_rows or len(point_sample)
    for start in range(0, len(point_sample), chunk_rows):
        part = slice(start, start + chunk_rows)
        rows, alpha = point_sample[part], point_alpha[part]
        points = {}
        for key, x in space.inputs.items():
            b = space.baselines[key][rows]
            shape = (-1,) + (1,) * (x.dim() - 1)
            points[key] = (b + alpha.view(shape) * (x[rows] - b)).requires_grad_(True)
        logits = space.forward(points, rows)
        if callable(targets):
            targets = targets(logits[: space.batch_size].detach())
        output = target_logit(logits, targets[rows])
        grads = torch.autograd.grad(output.sum(), list(points.values()), allow_unused=True)
        used = {key: grad for key, grad in zip(points, grads) if grad is not None}
        yield part, rows, used, output.detach(), targets
