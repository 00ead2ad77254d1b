"""Integrated Gradients to a tolerance: every patient within it, minimal steps, honest warnings, bad input."""

import math
import warnings

import pytest
import torch
from conftest import assert_restored, single_sample, total

from ehrexplain.methods import IntegratedGradients, _ig_tolerance
from ehrexplain.methods._quadrature import alpha_grid, nested_steps
from ehrexplain.methods.integrated_gradients import GAP_FLOOR, ConvergenceWarning
from ehrexplain.testing import FunctionModel, tolerance_passes

TOLERANCE = 1e-3


def independent_gap(model, batch):
    """f(x) - f(UNK baseline, padding kept) with PyHealth's own forward (binary models, one logit)."""
    embed = model.get_embedding_model()
    with torch.no_grad():
        f_x = model(**batch)["logit"][:, 0]
        unk = {k: (embed({k: (batch[k] != 0).long()})[k], (batch[k] != 0).int()) for k in model.feature_keys}
        f_b = model.forward_from_embedding(**unk)["logit"][:, 0]
    return f_x - f_b


def bound(gap, tolerance=TOLERANCE):
    return tolerance * gap.abs().clamp_min(GAP_FLOOR)


def test_clenshaw_curtis_rules_are_exact_and_nested():
    assert nested_steps(65) == [2, 3, 5, 9, 17, 33, 65]
    for points in (2, 3, 5, 9, 17, 33):
        alphas, weights = alpha_grid(points, "clenshaw_curtis")
        for degree in range(points):  # exact up to degree points - 1
            assert (weights * alphas**degree).sum().item() == pytest.approx(1 / (degree + 1), abs=1e-12)
        finer, _ = alpha_grid(2 * points - 1, "clenshaw_curtis")
        assert torch.equal(finer[::2], alphas)  # every node reused by the next rule
    assert alpha_grid(3, "clenshaw_curtis")[0].tolist() == [0.0, 0.5, 1.0]


def test_unconverged_patient_keeps_its_smallest_delta():
    """A ReLU kink at α = 0.05: the 5-point rule happens to beat the 9-point one; it is kept and named."""
    toy = FunctionModel(lambda x: torch.relu(x[:, 0] - 0.05))
    x, b = torch.tensor([[1.0]]), {"x": torch.zeros(1, 1)}
    ig = IntegratedGradients(toy, use_embeddings=False)
    with pytest.warns(ConvergenceWarning, match="1 of 1 patients"):
        scores, delta, steps = ig.attribute(x=x, baseline=b, tolerance=TOLERANCE, max_steps=9,
                                            return_convergence_delta=True, return_steps=True)  # fmt: skip
    errors = {n: (ig.attribute(x=x, baseline=b, steps=n, alpha_rule="clenshaw_curtis")["x"].sum() - 0.95).abs().item()
              for n in (2, 3, 5, 9)}  # fmt: skip
    best = min(errors, key=errors.get)
    assert best < 9 and steps.item() == best and delta.abs().item() == pytest.approx(errors[best], abs=1e-6)


@pytest.fixture(scope="module")
def demo_batch(held_out_demo):
    return held_out_demo.cohort.batch(held_out_demo.test[:16])


@pytest.fixture(scope="module", params=["transformer", "mlp"])
def demo_run(request, held_out_demo, demo_batch):
    """(model, scores, delta, steps) for IG to TOLERANCE on 16 held-out demo patients.

    The MLP's ReLU kinks make its path integrand jump, which slows every
    polynomial rule: some of its patients need thousands of points.
    """
    model = getattr(held_out_demo, request.param)
    max_steps = 4097 if request.param == "mlp" else 1025
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        scores, delta, steps = IntegratedGradients(model).attribute(
            **demo_batch, tolerance=TOLERANCE, max_steps=max_steps, return_convergence_delta=True, return_steps=True
        )
    return model, scores, delta, steps


def test_every_patient_ends_within_tolerance(demo_run, demo_batch):
    model, scores, delta, steps = demo_run
    gap = independent_gap(model, demo_batch)
    error = total(scores) - gap
    assert (error.abs() <= bound(gap)).all(), (error / gap).tolist()
    torch.testing.assert_close(delta, error, atol=1e-4, rtol=0)  # the delta reported is the true error
    assert steps.dtype == torch.long and steps.shape == (16,)


def test_steps_are_the_smallest_nested_rule_that_meets_the_bound(demo_run, demo_batch):
    """Same scores as the fixed Clenshaw–Curtis rule with that many points; the rule before misses."""
    model, scores, _, steps = demo_run
    gap = independent_gap(model, demo_batch)
    ig = IntegratedGradients(model, alpha_rule="clenshaw_curtis")
    assert len(set(steps.tolist())) > 1  # patients differ in difficulty: refinement is per patient
    for n in sorted(set(steps.tolist())):
        chosen = steps == n
        fixed = ig.attribute(**demo_batch, steps=n)
        for key in scores:
            torch.testing.assert_close(scores[key][chosen], fixed[key][chosen], atol=2e-5, rtol=1e-4)
        if n > 2:
            coarser = total(ig.attribute(**demo_batch, steps=(n + 1) // 2)) - gap
            assert (coarser[chosen].abs() > bound(gap)[chosen]).all(), n


def test_max_steps_warns_and_keeps_the_best_rule(held_out_demo, demo_batch):
    model = held_out_demo.transformer
    ig = IntegratedGradients(model)
    _, free_steps = ig.attribute(**demo_batch, tolerance=TOLERANCE, return_steps=True)
    cap = int(free_steps.max()) - 1  # one point short of what the hardest patient needs
    with pytest.warns(ConvergenceWarning) as caught:
        scores, delta, steps = ig.attribute(
            **demo_batch, tolerance=TOLERANCE, max_steps=cap, return_convergence_delta=True, return_steps=True
        )
    gap = independent_gap(model, demo_batch)
    outside = (total(scores) - gap).abs() > bound(gap)
    assert outside.any() and (steps <= cap).all()
    assert (outside == (free_steps > cap)).all()  # exactly those that needed more, none hidden
    message = str(caught[0].message)
    worst = (delta.abs() / gap.abs().clamp_min(GAP_FLOOR))[outside].max().item()
    assert f"{int(outside.sum())} of 16 patients" in message and f"{worst:.3g}" in message
    rules = [n for n in (2, 3, 5, 9, 17, 33, 65, 129, 257) if n <= cap]
    fixed_errors = torch.stack(
        [(total(IntegratedGradients(model, steps=n, alpha_rule="clenshaw_curtis").attribute(**demo_batch)) - gap).abs()
         for n in rules]
    )  # fmt: skip
    torch.testing.assert_close(delta.abs()[outside], fixed_errors.min(dim=0).values[outside], atol=2e-4, rtol=1e-3)


@pytest.fixture
def passes():
    """Rows of every model pass IG's tolerance path makes during the test."""
    with tolerance_passes() as rows:
        yield rows


def test_chunks_and_points_evaluated_ahead_do_not_change_the_result(held_out_demo, demo_batch, monkeypatch, passes):
    """Chunks smaller than the batch (targets and gap then need their own forward pass) and
    evaluating a rule ahead only change the cost: same steps, same scores, same delta."""
    ig = IntegratedGradients(held_out_demo.transformer)
    options = dict(tolerance=TOLERANCE, return_convergence_delta=True, return_steps=True)
    reference = ig.attribute(**demo_batch, **options)
    ahead = len(passes)
    variants = [ig.attribute(**demo_batch, **options, internal_batch_size=5)]
    monkeypatch.setattr(_ig_tolerance, "SPECULATIVE_POINTS", 0)
    passes.clear()
    variants.append(ig.attribute(**demo_batch, **options))
    assert ahead <= len(passes)
    for scores, delta, steps in variants:
        assert torch.equal(steps, reference[2])
        torch.testing.assert_close(delta, reference[1], atol=2e-5, rtol=0)
        for key in scores:
            torch.testing.assert_close(scores[key], reference[0][key], atol=2e-5, rtol=1e-4)


def test_a_slowly_converging_patient_gets_the_rule_after_next_in_the_same_pass(monkeypatch, passes):
    """f = atan((x - 0.5) / 0.05) along [0, 1]: |δ| shrinks slowly, so after the first pass (17 points)
    the 65-point rule's nodes are evaluated together with the 33-point rule's: two passes, not three."""
    toy = FunctionModel(lambda x: torch.atan((x[:, 0] - 0.5) / 0.05))
    x = torch.tensor([[1.0], [0.2]])  # the second patient's path misses the steep part
    ig = IntegratedGradients(toy, use_embeddings=False)
    runs, default = {}, _ig_tolerance.SPECULATIVE_POINTS
    for ahead in (default, 0):
        monkeypatch.setattr(_ig_tolerance, "SPECULATIVE_POINTS", ahead)
        passes.clear()
        scores, steps = ig.attribute(x=x, baseline={"x": torch.zeros_like(x)}, tolerance=TOLERANCE, return_steps=True)
        runs[ahead] = list(passes)
        gap = toy(x=x)["logit"][:, 0] - toy(x=torch.zeros_like(x))["logit"][:, 0]
        assert steps.tolist() == [65, 5]
        assert ((scores["x"][:, 0] - gap).abs() <= bound(gap)).all()  # one feature: IG is the whole gap
    assert runs[0] == [2 * 17, 16, 32]  # 33 points, then 65: three passes
    assert runs[default] == [2 * 17, 16 + 32]


def test_multiclass_targets_come_from_the_first_pass(multiclass_transformer, multiclass_batch):
    """The first pass's α = 1 rows are f(x): the predicted class is explained by default, any class on
    request, each within tolerance of its own logit's gap; a bad class is named before any backward."""
    model, ig = multiclass_transformer, IntegratedGradients(multiclass_transformer)
    options = dict(tolerance=TOLERANCE, return_convergence_delta=True, return_steps=True)
    embed = model.get_embedding_model()
    with torch.no_grad():
        f_x = model(**multiclass_batch)["logit"]
        codes = {k: multiclass_batch[k] != 0 for k in model.feature_keys}
        unk = {k: (embed({k: present.long()})[k], present.int()) for k, present in codes.items()}
        gaps = f_x - model.forward_from_embedding(**unk)["logit"]
    predicted = f_x.argmax(-1)
    default = ig.attribute(**multiclass_batch, **options)
    for target, chunk in ((predicted, 1024), (predicted, 3), (torch.full_like(predicted, 2), 1024)):
        scores, _, steps = ig.attribute(**multiclass_batch, **options, target_class_idx=target, internal_batch_size=chunk)
        gap = gaps.gather(1, target[:, None])[:, 0]
        assert ((total(scores) - gap).abs() <= bound(gap)).all()
        if target is predicted:
            assert torch.equal(steps, default[2])
            for key in scores:
                torch.testing.assert_close(scores[key], default[0][key], atol=2e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="out of range for this 3-class model"):
        ig.attribute(**multiclass_batch, tolerance=TOLERANCE, target_class_idx=3)
    assert_restored(model, training_before=False)


def test_batch_equals_per_sample(transformer, flat_batch):
    ig = IntegratedGradients(transformer)
    batched, steps = ig.attribute(**flat_batch, tolerance=TOLERANCE, return_steps=True)
    for i in range(len(steps)):
        one, one_steps = ig.attribute(**single_sample(flat_batch, i, transformer.feature_keys), tolerance=TOLERANCE, return_steps=True)
        assert one_steps.item() == steps[i].item()
        for key, score in one.items():
            torch.testing.assert_close(score[0], batched[key][i, : score.shape[1]], atol=2e-5, rtol=1e-4)


def test_fixed_steps_unchanged_and_report_their_points(transformer, flat_batch):
    ig = IntegratedGradients(transformer, steps=7)
    plain = ig.attribute(**flat_batch)
    scores, steps = ig.attribute(**flat_batch, return_steps=True)
    for key in plain:
        assert torch.equal(scores[key], plain[key])
    assert steps.tolist() == [8] * len(steps)  # PyHealth's grid: steps + 1 points
    _, _, steps = ig.attribute(**flat_batch, steps=5, alpha_rule="gauss_legendre", return_convergence_delta=True, return_steps=True)
    assert steps.tolist() == [5] * len(steps)


def test_closed_form_per_feature():
    """f = exp(w·x): IG_i = w_i (x_i - b_i) / (w·(x - b)) · (f(x) - f(b)), to the tolerance."""
    w = torch.tensor([1.0, 2.0, -0.5])
    toy = FunctionModel(lambda x: torch.exp(x @ w))
    x = torch.tensor([[2.0, 1.5, 1.0], [0.3, 0.2, 0.1]])
    b = torch.zeros_like(x)
    scores, steps = IntegratedGradients(toy, use_embeddings=False).attribute(
        x=x, baseline={"x": b}, tolerance=1e-5, return_steps=True
    )
    gap = torch.exp(x @ w) - 1
    expected = w * (x - b) / ((x - b) @ w)[:, None] * gap[:, None]
    torch.testing.assert_close(scores["x"], expected, atol=0, rtol=2e-5)
    assert steps[0] > steps[1] > 2  # the steeper exponential needs the finer rule


def test_zero_gap_uses_the_absolute_floor():
    """f(x) = f(b) while the path is not flat: |δ| <= tolerance × GAP_FLOOR, in logits."""
    toy = FunctionModel(lambda x: torch.sin(2 * math.pi * x[:, 0]))
    x = torch.tensor([[1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        scores, delta, steps = IntegratedGradients(toy, use_embeddings=False).attribute(
            x=x, baseline={"x": torch.zeros_like(x)}, tolerance=TOLERANCE, return_convergence_delta=True, return_steps=True
        )
    assert delta.abs().item() <= TOLERANCE * GAP_FLOOR and steps.item() > 3


def test_patient_with_no_codes(transformer, flat_batch):
    """All padding: the baseline keeps the padding, so x = b, every score is exactly zero, the gap is zero
    and the patient is done at the first rule; the others are unaffected."""
    batch = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in flat_batch.items()}
    for key in transformer.feature_keys:
        batch[key][0] = 0
    ig = IntegratedGradients(transformer)
    scores, delta, steps = ig.attribute(**batch, tolerance=TOLERANCE, return_convergence_delta=True, return_steps=True)
    reference, reference_steps = ig.attribute(**flat_batch, tolerance=TOLERANCE, return_steps=True)
    assert all(torch.count_nonzero(scores[key][0]) == 0 for key in scores)
    assert delta[0] == 0 and steps[0] == min(steps)
    assert torch.equal(steps[1:], reference_steps[1:])
    for key in scores:
        torch.testing.assert_close(scores[key][1:], reference[key][1:], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"tolerance": 0}, ValueError, "positive finite"),
        ({"tolerance": -1e-3}, ValueError, "positive finite"),
        ({"tolerance": float("nan")}, ValueError, "positive finite"),
        ({"tolerance": float("inf")}, ValueError, "positive finite"),
        ({"tolerance": True}, TypeError, "tolerance must be a positive real number, got bool"),
        ({"tolerance": "1e-3"}, TypeError, "got str"),
        ({"tolerance": 1e-3, "max_steps": True}, TypeError, "max_steps must be an integer, got bool"),
        ({"tolerance": 1e-3, "max_steps": 33.0}, TypeError, "max_steps must be an integer, got float"),
        ({"tolerance": 1e-3, "max_steps": 1}, ValueError, "max_steps must be >= 2"),
        ({"max_steps": 33}, ValueError, "max_steps only applies together with tolerance"),
        ({"tolerance": 1e-3, "steps": 20}, ValueError, "drop steps=/alpha_rule="),
        ({"tolerance": 1e-3, "alpha_rule": "gauss_legendre"}, ValueError, "drop steps=/alpha_rule="),
    ],
)
def test_bad_arguments(transformer, flat_batch, options, error, match):
    with pytest.raises(error, match=match):
        IntegratedGradients(transformer).attribute(**flat_batch, **options)
    assert_restored(transformer, training_before=False)


def test_readme_point_counts_hold(held_out_demo, passes):
    """README's benchmark paragraph: ehrexplain's path points on the bench's 32 and 90 held-out patients,
    and the points the model ran that no patient's scores use."""
    import re
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    used, low, high = map(int, re.search(r"ehrexplain used (\d+) path points \((\d+) to (\d+) per patient\)", text).groups())
    used_90 = int(re.search(r"on 90, (\d+) against", text).group(1))
    unused = tuple(map(int, re.search(r"also ran (\d+) and (\d+) points that no patient's scores use", text).groups()))
    measured = []
    for patients in (32, 90):
        passes.clear()
        batch = held_out_demo.cohort.batch(held_out_demo.test[:patients])
        _, steps = IntegratedGradients(held_out_demo.transformer).attribute(**batch, tolerance=1e-3, return_steps=True)
        measured.append((int(steps.sum()), int(steps.min()), int(steps.max()), sum(passes) - int(steps.sum())))
    assert measured[0][:3] == (used, low, high) and measured[1][0] == used_90
    assert (measured[0][3], measured[1][3]) == unused
