"""Integrated Gradients: completeness, batching, PyHealth parity, closed forms, bad input."""

import pytest
import torch
from conftest import assert_restored, grad_pass_rows, padding_kept_baseline, single_sample, total

from ehrexplain.methods import IntegratedGradients
from ehrexplain.methods.integrated_gradients import alpha_grid
from ehrexplain.testing import FunctionModel, ReluDifference


def gap_to_baseline(scores, delta):
    """f(x) - f(b) recovered from what IG returns."""
    return total(scores) - delta


@pytest.fixture(params=["transformer", "flat_mlp"])
def flat_model(request):
    return request.getfixturevalue(request.param)


def test_alpha_grids_integrate_polynomials():
    alphas, weights = alpha_grid(4, "pyhealth")
    assert alphas.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert torch.allclose(weights, torch.full((5,), 0.2, dtype=torch.float64))
    alphas, weights = alpha_grid(3, "gauss_legendre")
    for degree in range(6):  # exact up to degree 2n - 1
        assert (weights * alphas**degree).sum().item() == pytest.approx(1 / (degree + 1), abs=1e-12)


def test_completeness_error_shrinks_with_steps(flat_model, flat_batch):
    ig = IntegratedGradients(flat_model)
    errors = []
    for steps in (5, 20, 50, 300):
        scores, delta = ig.attribute(**flat_batch, steps=steps, return_convergence_delta=True)
        errors.append(delta.abs().mean().item())
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0] / 10
    gap = gap_to_baseline(scores, delta)
    assert (delta.abs() <= 0.01 * gap.abs().mean()).all(), (delta, gap)  # 1% of the typical gap


def test_delta_equals_independent_gap(transformer, flat_batch):
    """f(x) - f(UNK baseline), computed here with PyHealth's own forward, matches Σ IG - delta."""
    scores, delta = IntegratedGradients(transformer).attribute(**flat_batch, steps=10, return_convergence_delta=True)
    embed = transformer.get_embedding_model()
    with torch.no_grad():
        f_x = transformer(**flat_batch)["logit"][:, 0]
        unk = {k: (embed({k: torch.ones_like(flat_batch[k])})[k], (flat_batch[k] != 0).int()) for k in transformer.feature_keys}
        f_b = transformer.forward_from_embedding(**unk)["logit"][:, 0]
    torch.testing.assert_close(gap_to_baseline(scores, delta), f_x - f_b, atol=1e-4, rtol=1e-4)


def test_gauss_legendre_needs_far_fewer_steps(transformer, flat_batch):
    ig = IntegratedGradients(transformer)
    _, riemann = ig.attribute(**flat_batch, steps=300, return_convergence_delta=True)
    _, gauss = ig.attribute(**flat_batch, steps=20, alpha_rule="gauss_legendre", return_convergence_delta=True)
    assert gauss.abs().max() < riemann.abs().max() / 10


@pytest.mark.parametrize("chunk", [1, 5, 8, 23])
def test_chunked_path_equals_one_pass(transformer, flat_batch, chunk):
    ig = IntegratedGradients(transformer, steps=6)
    whole = ig.attribute(**flat_batch, internal_batch_size=None)
    chunked = ig.attribute(**flat_batch, internal_batch_size=chunk)
    for key in whole:
        torch.testing.assert_close(chunked[key], whole[key], atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_name, batch_name", [("transformer", "flat_batch"), ("flat_mlp", "flat_batch"),
                                                    ("lab_mlp", "lab_batch"), ("stage_attention_net", "nested_batch")])  # fmt: skip
def test_equals_pyhealth_per_step_loop(request, model_name, batch_name):
    from pyhealth.interpret.methods import IntegratedGradients as PyHealthIG

    model, batch = request.getfixturevalue(model_name), request.getfixturevalue(batch_name)
    ours = IntegratedGradients(model).attribute(**batch, steps=15)
    theirs = PyHealthIG(model).attribute(**batch, steps=15, baseline=padding_kept_baseline(model, batch))
    for key in ours:
        assert ours[key].shape == batch[key].shape
        torch.testing.assert_close(ours[key], theirs[key].float(), atol=1e-5, rtol=1e-4)


def test_continuous_features_attributed_in_raw_space(lab_mlp, lab_batch):
    ig = IntegratedGradients(lab_mlp, alpha_rule="gauss_legendre")
    _, coarse = ig.attribute(**lab_batch, steps=4, return_convergence_delta=True)
    scores, fine = ig.attribute(**lab_batch, steps=64, return_convergence_delta=True)
    assert scores["labs"].shape == lab_batch["labs"].shape
    assert (scores["labs"].abs().sum(dim=1) > 0).all()  # every raw lab value gets its own score
    # ReLU kinks limit any quadrature; the error still falls and stays small in logits.
    assert fine.abs().mean() < coarse.abs().mean() / 2 and fine.abs().max() < 1e-2


def test_batch_equals_per_sample(transformer, flat_batch):
    ig = IntegratedGradients(transformer, steps=8)
    batched = ig.attribute(**flat_batch)
    for i in range(4):
        one = ig.attribute(**single_sample(flat_batch, i, transformer.feature_keys))
        for key, score in one.items():
            width = score.shape[1]
            torch.testing.assert_close(score[0], batched[key][i, :width], atol=1e-5, rtol=1e-4)
            assert batched[key][i, width:].abs().max() < 1e-6 if batched[key].shape[1] > width else True


def test_target_class_is_honoured(multiclass_transformer, multiclass_batch):
    ig = IntegratedGradients(multiclass_transformer, steps=32, alpha_rule="gauss_legendre")
    gaps = {}
    for target in range(3):
        scores, delta = ig.attribute(**multiclass_batch, target_class_idx=target, return_convergence_delta=True)
        gaps[target] = gap_to_baseline(scores, delta)
    logits = torch.stack([gaps[c] for c in range(3)], dim=1)
    # Gaps of different classes differ, and their differences match the logit differences.
    assert (logits[:, 0] - logits[:, 1]).abs().max() > 1e-3
    scores_default = ig.attribute(**multiclass_batch)
    predicted = multiclass_transformer(**multiclass_batch)["logit"].argmax(-1)
    scores_pred = ig.attribute(**multiclass_batch, target_class_idx=predicted)
    torch.testing.assert_close(scores_default["conditions"], scores_pred["conditions"])


def test_closed_form_relu_toy():
    toy = FunctionModel(ReluDifference())
    x = torch.tensor([[3.0, 1.0]])
    scores, delta = IntegratedGradients(toy, use_embeddings=False, steps=10, alpha_rule="gauss_legendre").attribute(
        x=x, baseline={"x": torch.zeros_like(x)}, return_convergence_delta=True
    )
    torch.testing.assert_close(scores["x"], torch.tensor([[1.5, -0.5]]))
    assert delta.abs().item() < 1e-6


def test_linear_model_is_exact_for_any_steps():
    weights = torch.tensor([2.0, -1.0, 0.5])
    toy = FunctionModel(lambda x: x @ weights)
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    scores, delta = IntegratedGradients(toy, use_embeddings=False, steps=1).attribute(x=x, return_convergence_delta=True)
    torch.testing.assert_close(scores["x"], (x - 1e-2) * weights)
    assert delta.abs().max() < 1e-5


def test_no_grad_context_and_parameter_grads_untouched(transformer, flat_batch):
    ig = IntegratedGradients(transformer, steps=5)
    expected = ig.attribute(**flat_batch)
    sentinel = {name: torch.full_like(p, 7.0) for name, p in transformer.named_parameters()}
    for name, p in transformer.named_parameters():
        p.grad = sentinel[name].clone()
    try:
        with torch.no_grad():
            got = ig.attribute(**flat_batch)
        with torch.inference_mode():
            got_inference = ig.attribute(**flat_batch)
        for name, p in transformer.named_parameters():
            assert torch.equal(p.grad, sentinel[name]), name
    finally:
        for p in transformer.parameters():
            p.grad = None
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])
        torch.testing.assert_close(got_inference[key], expected[key])


def test_train_mode_restored(transformer, flat_batch):
    transformer.train()
    try:
        IntegratedGradients(transformer, steps=3).attribute(**flat_batch)
        assert_restored(transformer, training_before=True)
    finally:
        transformer.eval()


@pytest.mark.parametrize("steps, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError)])
def test_bad_steps(transformer, steps, error):
    with pytest.raises(error, match="steps must be a positive integer"):
        IntegratedGradients(transformer, steps=steps)


@pytest.mark.parametrize("size", [0, -1])
def test_bad_internal_batch_size(transformer, flat_batch, size):
    with pytest.raises(ValueError, match="internal_batch_size must be a positive integer"):
        IntegratedGradients(transformer).attribute(**flat_batch, internal_batch_size=size)
    assert_restored(transformer, training_before=False)


def test_unknown_alpha_rule(transformer):
    with pytest.raises(ValueError, match="unknown alpha_rule 'simpson'"):
        IntegratedGradients(transformer, alpha_rule="simpson")


def test_time_aware_stagenet_equals_pyhealth(stagenet_and_batch):
    """(times, values) tuples: attributions land on the values, in their raw shapes, as PyHealth's do."""
    from pyhealth.interpret.methods import IntegratedGradients as PyHealthIG

    model, batch = stagenet_and_batch
    ours, delta = IntegratedGradients(model).attribute(**batch, steps=10, return_convergence_delta=True)
    theirs = PyHealthIG(model).attribute(**batch, steps=10, baseline=padding_kept_baseline(model, batch))
    for key in ("codes", "labs"):
        assert ours[key].shape == batch[key][1].shape
        torch.testing.assert_close(ours[key], theirs[key].float(), atol=1e-5, rtol=1e-4)
    _, fine = IntegratedGradients(model).attribute(**batch, steps=64, alpha_rule="gauss_legendre", return_convergence_delta=True)
    assert fine.abs().max() < delta.abs().max() / 10


@pytest.mark.parametrize("tolerance", [None, 1e-3])
def test_default_passes_are_bounded_by_tokens_and_give_the_one_pass_scores(transformer, flat_batch, monkeypatch, tolerance):
    """Rows per pass follow the records' length: 5 rows of this batch's padded length fill PASS_TOKENS here."""
    import ehrexplain.methods._chunking as chunking

    tokens = flat_batch["conditions"].shape[1] + flat_batch["procedures"].shape[1]  # one padded row
    monkeypatch.setattr(chunking, "PASS_TOKENS", 5 * tokens + 3)
    options = {"steps": 6} if tolerance is None else {"tolerance": tolerance}
    ig = IntegratedGradients(transformer)
    whole = ig.attribute(**flat_batch, internal_batch_size=None, **options)
    rows = grad_pass_rows(monkeypatch)
    default = ig.attribute(**flat_batch, **options)
    assert max(rows) == 5 and sum(rows) >= 7 * len(flat_batch["conditions"])  # every path point, 5 rows at most
    for key in whole:
        torch.testing.assert_close(default[key], whole[key], atol=1e-6, rtol=0)


def test_explicit_internal_batch_size_wins_over_the_token_budget(transformer, flat_batch, monkeypatch):
    import ehrexplain.methods._chunking as chunking

    monkeypatch.setattr(chunking, "PASS_TOKENS", 1)  # "auto" would take one row per pass
    rows = grad_pass_rows(monkeypatch)
    IntegratedGradients(transformer, steps=6).attribute(**flat_batch, internal_batch_size=20)
    assert rows == [20, 20, 16]  # 7 path points × 8 patients
    rows.clear()
    IntegratedGradients(transformer, steps=6).attribute(**flat_batch, internal_batch_size="auto")
    assert rows == [1] * 56


def test_rows_per_pass_from_tokens():
    from ehrexplain.methods._chunking import PASS_ROWS, PASS_TOKENS, pass_rows

    assert pass_rows("auto", 456) == PASS_TOKENS // 456 == 35  # the eICU records: 35 rows, not 1024
    assert pass_rows("auto", 3) == PASS_ROWS  # short rows: at most PASS_ROWS
    assert pass_rows("auto", 10 * PASS_TOKENS) == 1  # a record longer than the budget still runs, one row a pass
    assert pass_rows(7, 456) == 7 and pass_rows(None, 456) is None


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


@pytest.mark.parametrize("where", ["constructor", "call", "gauss_legendre", "max_steps"])
def test_huge_steps_are_refused_before_anything_is_allocated(transformer, flat_batch, where):
    """steps=10**9 used to allocate 8 GB for the nodes (an allocation failure); now a ValueError with the numbers."""
    message = {
        "constructor": r"steps=1000000000 would build 1,000,000,001 path points \(quadrature nodes\) per patient; "
                       r"the limit is MAX_STEPS = 4,097",
        "call": r"steps=1000000000 would build 1,000,000,001 path points",
        "gauss_legendre": r"steps=100000 would build 100,000 path points .* the limit is MAX_STEPS = 4,097",
        "max_steps": r"max_steps=1000000000 would build 536,870,913 path points .* the limit is MAX_STEPS = 4,097",
    }[where]
    before = _peak_rss_mb()
    with pytest.raises(ValueError, match=message):
        if where == "constructor":
            IntegratedGradients(transformer, steps=10**9)
        elif where == "call":
            IntegratedGradients(transformer).attribute(**flat_batch, steps=10**9)
        elif where == "gauss_legendre":  # its rule alone would need a 10⁵ × 10⁵ matrix (80 GB)
            IntegratedGradients(transformer, steps=10**5, alpha_rule="gauss_legendre")
        else:
            IntegratedGradients(transformer).attribute(**flat_batch, tolerance=1e-3, max_steps=10**9)
    assert _peak_rss_mb() - before < 100
    IntegratedGradients(transformer, steps=4097)  # the limit itself is accepted


def test_tolerance_store_beyond_its_limit_is_refused_with_the_numbers(transformer, flat_batch, monkeypatch):
    import ehrexplain.methods._ig_tolerance as engine

    values = flat_batch["conditions"].shape[1] + flat_batch["procedures"].shape[1]
    scores = 257 * 8 * values  # the finest rule of the default max_steps, 8 patients
    monkeypatch.setattr(engine, "MAX_STORED_SCORES", scores - 1)
    rows = grad_pass_rows(monkeypatch)
    with pytest.raises(ValueError, match=rf"up to 257 path points \(max_steps\) × 8 patients × {values} input values = "
                                         rf"{scores:,} scores .* the limit is MAX_STORED_SCORES = {scores - 1:,}"):
        IntegratedGradients(transformer).attribute(**flat_batch, tolerance=1e-3)
    assert rows == []  # refused before the first path pass
    monkeypatch.setattr(engine, "MAX_STORED_SCORES", scores)
    IntegratedGradients(transformer).attribute(**flat_batch, tolerance=1e-3)
