"""Integrated Gradients to a tolerance: ehrexplain's adaptive rule against Captum's fixed steps.

Run with ``make bench`` (or ``python bench/bench_ig_tolerance.py --help``). Needs Captum,
an optional dependency: ``pip install -e '.[bench]'`` (or ``pip install 'captum>=0.8'``).

Every patient must end with ``|δ| <= tolerance × max(|f(x) - f(b)|, GAP_FLOOR)``,
where ``δ = Σ attributions - (f(x) - f(b))`` and ``f(x) - f(b)`` is computed once
here, the same for all three contenders, on the demo Transformer
(``make_cohort(300, seed=0)``, trained on 70%), for the first 32 held-out
patients and then all 90 (``--patients``):

* ehrexplain: ``IntegratedGradients(model).attribute(**batch, tolerance=...)``;
* Captum's ``IntegratedGradients`` at its defaults (50 Gauss-Legendre steps) on
  the same ``forward_from_embedding`` function, inputs and baselines;
* the oracle: the fewest fixed Captum steps that meet the bound for every
  patient, found here by trying 1, 2, 3, ... steps (no user knows it beforehand).

The three calls take turns and each time is a median, so a burst of load hits
them alike; every ratio compares two measurements of this run. Goal (issue 11):
every patient within tolerance, at least 2x faster than Captum's defaults, and
as close to the oracle as possible. "path points" counts the points each
patient's scores use; "model rows" counts every point run through the model,
including those ehrexplain evaluated ahead for patients likely to need a finer
rule (``SPECULATIVE_POINTS``).
"""

from __future__ import annotations

import argparse
import sys
import warnings

import torch
from bench_interpreters import median_seconds

CAPTUM_MISSING = (
    "This benchmark compares against Captum, an optional dependency that is not installed.\n"
    "Install it into the same environment, then run again:\n"
    "    .venv/bin/pip install -e '.[bench]'      # or: pip install 'captum>=0.8'"
)


def import_captum_ig():
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        sys.exit(CAPTUM_MISSING)
    return IntegratedGradients


def build(n_patients: int):
    """Model, batch, the shared attribution space and each patient's gap ``f(x) - f(b)``."""
    from ehrexplain.methods._embedding_space import AttributionSpace, target_logit
    from ehrexplain.data.synthetic import make_cohort, train_demo_model

    cohort = make_cohort(n_patients=300, seed=0)
    train, test = cohort.split(0.3, seed=0)
    model = train_demo_model(cohort, kind="transformer", seed=0, indices=train).eval()
    batch = cohort.batch(test[:n_patients])
    space = AttributionSpace.build(model, batch, None, use_embeddings=True)
    targets = torch.zeros(space.batch_size, dtype=torch.long)  # one logit: binary task
    with torch.no_grad():
        gap = target_logit(space.forward(space.inputs, space.rows), targets)
        gap = gap - target_logit(space.forward(space.baselines, space.rows), targets)
    return model, batch, space, gap


def captum_call(space, captum_ig, n_steps: int):
    """Captum's IG on ``forward_from_embedding`` (through ``space.forward``), ``n_steps`` Gauss-Legendre steps."""
    keys = list(space.inputs)

    def forward(*args):
        *points, rows = args  # Captum repeats ``rows`` once per step, in step with the inputs
        return space.forward(dict(zip(keys, points)), rows)

    explainer = captum_ig(forward)
    inputs = tuple(space.inputs[key] for key in keys)
    baselines = tuple(space.baselines[key] for key in keys)
    return lambda: explainer.attribute(
        inputs, baselines, target=0, additional_forward_args=(space.rows,), n_steps=n_steps, method="gausslegendre"
    )


def relative_deltas(attributions, gap) -> torch.Tensor:
    """``|Σ attributions - gap| / max(|gap|, GAP_FLOOR)`` per patient."""
    from ehrexplain.methods._embedding_space import sample_totals
    from ehrexplain.methods.integrated_gradients import GAP_FLOOR

    parts = attributions if isinstance(attributions, dict) else dict(enumerate(attributions))  # Captum: a tuple
    return (sample_totals(parts).detach() - gap).abs() / gap.abs().clamp_min(GAP_FLOOR)


def oracle_steps(space, captum_ig, gap, tolerance: float, most: int) -> int:
    """Fewest Captum steps with every patient within ``tolerance`` (each count tried in turn)."""
    for n_steps in range(1, most + 1):
        if (relative_deltas(captum_call(space, captum_ig, n_steps)(), gap) <= tolerance).all():
            return n_steps
    sys.exit(f"no Captum step count up to {most} meets tolerance {tolerance:g}; raise --oracle-max-steps")


def compare(n_patients: int, args, captum_ig) -> None:
    """Time the three contenders on ``n_patients`` held-out patients and print one table."""
    from ehrexplain import IntegratedGradients
    from ehrexplain.testing import tolerance_passes

    model, batch, space, gap = build(n_patients)
    ours = IntegratedGradients(model)
    oracle = oracle_steps(space, captum_ig, gap, args.tolerance, args.oracle_max_steps)
    calls = {
        "ehrexplain, tolerance": lambda: ours.attribute(**batch, tolerance=args.tolerance, return_steps=True),
        "Captum defaults (50 GL)": captum_call(space, captum_ig, 50),
        f"Captum oracle ({oracle} GL)": captum_call(space, captum_ig, oracle),
    }
    times = median_seconds(list(calls.values()), args.repeats, torch.device("cpu"))
    with tolerance_passes() as passes:  # outside the timed runs
        scores, steps = calls["ehrexplain, tolerance"]()
    points = {"ehrexplain, tolerance": int(steps.sum()), "Captum defaults (50 GL)": 50 * len(gap)}
    points[f"Captum oracle ({oracle} GL)"] = oracle * len(gap)
    model_rows = {"ehrexplain, tolerance": sum(passes)}
    print(f"\n{len(gap)} held-out patients, tolerance {args.tolerance:g} relative, "
          f"CPU ({torch.get_num_threads()} threads), median of {args.repeats} interleaved runs")  # fmt: skip
    print(f"{'method':<26}{'seconds':>9}{'path points':>13}{'model rows':>12}{'outside tol':>13}{'worst rel δ':>13}"
          f"{'ours faster':>13}")  # fmt: skip
    for (name, call), seconds in zip(calls.items(), times):
        relative = relative_deltas(scores if name.startswith("ehrexplain") else call(), gap)
        outside = int((relative > args.tolerance).sum())
        print(f"{name:<26}{seconds:>9.4f}{points[name]:>13}{model_rows.get(name, points[name]):>12}{outside:>13}"
              f"{relative.max().item():>13.2e}{seconds / times[0]:>12.2f}x")  # fmt: skip
    counts = {n: int((steps == n).sum()) for n in sorted(set(steps.tolist()))}
    print(f"ehrexplain's points per patient (nested Clenshaw-Curtis rules): {counts}; model passes: {passes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[32, 90], help="batch sizes to compare (max 90)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="relative to |f(x) - f(b)|")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--oracle-max-steps", type=int, default=400)
    args = parser.parse_args()
    captum_ig = import_captum_ig()
    warnings.filterwarnings("ignore")
    for n_patients in args.patients:
        compare(n_patients, args, captum_ig)


if __name__ == "__main__":
    main()
