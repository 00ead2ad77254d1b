"""DeepLift (Rescale): exactness where it should be exact, honesty where it is not."""

import warnings

import pytest
import torch
from conftest import assert_restored, single_sample, total
from torch import nn

from ehrexplain.methods import DeepLift, IntegratedGradients
from ehrexplain.testing import FunctionModel, ReluDifference


def test_closed_form_relu_toy():
    toy = FunctionModel(ReluDifference())
    x = torch.tensor([[3.0, 1.0]])
    scores, delta = DeepLift(toy, use_embeddings=False).attribute(
        x=x, baseline={"x": torch.zeros_like(x)}, return_convergence_delta=True
    )
    # Gradient x input would give (3, -1); the Rescale rule gives (1.5, -0.5), summing to f(x) - f(0) = 1.
    torch.testing.assert_close(scores["x"], torch.tensor([[1.5, -0.5]]))
    assert delta.abs().item() < 1e-6


@pytest.mark.parametrize(
    "activation",
    [nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.GELU(), nn.ELU(), nn.Softplus(), nn.LeakyReLU(0.1), nn.SiLU()],
    ids=lambda a: type(a).__name__,
)
@pytest.mark.parametrize("rule", ["exact", "gradient"])
def test_exact_on_linear_plus_elementwise_networks(activation, rule):
    """Both rules are exact here: the "gradient" rule gives the Rescale rule to every activation module."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), activation, nn.Linear(16, 8), activation, nn.Linear(8, 1))
    x, b = torch.randn(6, 5) * 2, torch.randn(6, 5)
    scores, delta = DeepLift(FunctionModel(net), use_embeddings=False, multiplier_rule=rule).attribute(
        x=x, baseline={"x": b}, return_convergence_delta=True
    )
    with torch.no_grad():
        gap = (net(x) - net(b)).squeeze(1)
    assert delta.abs().max() < 1e-5
    torch.testing.assert_close(total(scores), gap, atol=1e-5, rtol=1e-5)
    assert not net[1]._forward_hooks and not net[1]._forward_pre_hooks  # the rule's hooks removed


def test_agrees_with_integrated_gradients_on_linear_model():
    weights = torch.tensor([[2.0, -1.0, 0.5, 3.0]]).T
    toy = FunctionModel(nn.Linear(4, 1))
    with torch.no_grad():
        toy.function.weight.copy_(weights.T)
    x = torch.randn(5, 4)
    deeplift = DeepLift(toy, use_embeddings=False).attribute(x=x)["x"]
    ig = IntegratedGradients(toy, use_embeddings=False, steps=3).attribute(x=x)["x"]
    torch.testing.assert_close(deeplift, ig, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(deeplift, (x - 1e-2) * weights.T)


def test_exact_on_pyhealth_relu_mlp(flat_mlp, flat_batch):
    # PyHealth 2.1's DeepLift is no reference here: for a ReLU unit that is off at x
    # but on at the baseline its multiplier is 0 instead of the secant, and its
    # forced rescaling hides the resulting gap. The exact sum is the reference.
    scores, delta = DeepLift(flat_mlp).attribute(**flat_batch, return_convergence_delta=True)
    assert delta.abs().max() < 1e-5
    assert (sum(s.abs().sum(dim=1) for s in scores.values()) > 0).all()


def test_gradient_rule_delta_reported_not_hidden(transformer, flat_batch):
    deeplift = DeepLift(transformer, multiplier_rule="gradient")
    raw, delta = deeplift.attribute(**flat_batch, return_convergence_delta=True)
    # The "gradient" rule differentiates softmax, layer norm and attention products normally: not exact.
    assert delta.abs().max() > 1e-2
    flips = int(((total(raw) - delta) / total(raw) < 0).sum())
    assert flips > 0, "this batch should contain a sample whose forced rescaling flips signs"
    with pytest.warns(RuntimeWarning, match=f"{flips} sample\\(s\\) had every attribution's sign flipped"):
        forced, same_delta = deeplift.attribute(**flat_batch, return_convergence_delta=True, enforce_completeness=True)
    torch.testing.assert_close(same_delta, delta)  # the error measured before rescaling
    gap = total(raw) - delta
    torch.testing.assert_close(total(forced), gap, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(forced["conditions"], raw["conditions"])


def test_forced_completeness_is_silent_when_it_only_nudges():
    """On an exact (ReLU) network the factor is ~1: no warning."""
    model = FunctionModel(ReluDifference())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DeepLift(model, use_embeddings=False).attribute(
            x=torch.tensor([[3.0, 1.0]]), baseline={"x": torch.zeros(1, 2)}, enforce_completeness=True)


def test_gradient_rule_undone_after_error(transformer, flat_batch):
    """The forward fails after the activation modules ran under the rule (a hook on the output layer
    raises on the stacked [x; b] pass only): the rule's hooks are removed and the parameters' flags and
    the train mode restored."""
    stacked_rows = 2 * len(flat_batch["label"])

    def explode(module, args, output):
        if args[0].shape[0] == stacked_rows:
            raise RuntimeError("boom after the activations")

    ran = []
    gelus = [m for m in transformer.modules() if isinstance(m, nn.GELU)]
    rule_hooks = lambda m, args: ran.append(len(m._forward_pre_hooks))  # noqa: E731  (pre-hooks of the rule)
    handles = [m.register_forward_pre_hook(rule_hooks) for m in gelus]
    handles.append(transformer.fc.register_forward_hook(explode))
    frozen = next(transformer.parameters())
    frozen.requires_grad_(False)
    flags = [p.requires_grad for p in transformer.parameters()]
    transformer.train()
    try:
        with pytest.raises(RuntimeError, match="boom after the activations"):
            DeepLift(transformer, multiplier_rule="gradient").attribute(**flat_batch)
        assert gelus and max(ran) > 1, "the activation modules must have run under the rule before the error"
        for handle in handles:
            handle.remove()
        assert_restored(transformer, training_before=True)
        assert [p.requires_grad for p in transformer.parameters()] == flags
    finally:
        for handle in handles:
            handle.remove()
        frozen.requires_grad_(True)
        transformer.eval()


def test_batch_equals_per_sample(transformer, flat_batch):
    deeplift = DeepLift(transformer)
    batched = deeplift.attribute(**flat_batch)
    for i in range(4):
        one = deeplift.attribute(**single_sample(flat_batch, i, transformer.feature_keys))
        for key, score in one.items():
            torch.testing.assert_close(score[0], batched[key][i, : score.shape[1]], atol=1e-5, rtol=1e-4)


def test_nested_inputs(stage_attention_net, nested_batch):
    scores, delta = DeepLift(stage_attention_net).attribute(**nested_batch, return_convergence_delta=True)
    assert scores["visits"].shape == nested_batch["visits"].shape
    assert torch.isfinite(delta).all()


def test_target_class_is_honoured(multiclass_transformer, multiclass_batch):
    deeplift = DeepLift(multiclass_transformer)
    per_class = [deeplift.attribute(**multiclass_batch, target_class_idx=c)["conditions"] for c in range(3)]
    assert not torch.allclose(per_class[0], per_class[1])
    with torch.no_grad():
        predicted = multiclass_transformer(**multiclass_batch)["logit"].argmax(-1)
    default = deeplift.attribute(**multiclass_batch)["conditions"]
    torch.testing.assert_close(default, deeplift.attribute(**multiclass_batch, target_class_idx=predicted)["conditions"])


def test_parameter_grads_untouched_under_no_grad(transformer, flat_batch):
    for p in transformer.parameters():
        p.grad = torch.ones_like(p)
    try:
        with torch.no_grad():
            DeepLift(transformer).attribute(**flat_batch)
        assert all(torch.equal(p.grad, torch.ones_like(p)) for p in transformer.parameters())
    finally:
        for p in transformer.parameters():
            p.grad = None


def test_time_aware_stagenet(stagenet_and_batch):
    """(times, values) tuples: one score per raw value, a finite delta, the model's forward unchanged."""
    model, batch = stagenet_and_batch
    with torch.no_grad():
        before = model(**batch)["logit"]
    scores, delta = DeepLift(model).attribute(**batch, return_convergence_delta=True)
    assert {key: scores[key].shape for key in scores} == {key: batch[key][1].shape for key in ("codes", "labs")}
    assert torch.isfinite(delta).all() and delta.shape == (len(batch["label"]),)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch)["logit"], before)  # activations swapped back


def test_stage_attention_net_batch_equals_each_patient_alone_and_copies(stage_attention_net, nested_dataset):
    """StageNet keeps ``[time, batch, hidden]`` tensors: alone (2 rows) a patient with 2 visits, or as two copies
    (4 rows) one with 4, had its visits paired instead of its input and baseline rows (scores off by up to 1.9)."""
    from conftest import _batch

    keys = stage_attention_net.feature_keys
    full = _batch(nested_dataset, 48)
    visits = [int(full["visits"][i].ne(0).any(-1).sum()) for i in range(48)]
    chosen = sorted({n: visits.index(n) for n in visits}.values())  # one patient of each length, 1 to 5 visits
    assert sorted(visits[i] for i in chosen) == [1, 2, 3, 4, 5]  # 2 met the patient alone, 4 its two copies
    batch = {k: v[chosen] if isinstance(v, torch.Tensor) else [v[i] for i in chosen] for k, v in full.items()}
    deeplift = DeepLift(stage_attention_net)
    together = deeplift.attribute(**batch)["visits"]
    for i in range(len(chosen)):
        one = single_sample(batch, i, keys)
        alone = deeplift.attribute(**one)["visits"][0]
        twice = deeplift.attribute(**{k: torch.cat([v, v]) if isinstance(v, torch.Tensor) else v * 2 for k, v in one.items()})
        rows, codes = alone.shape
        torch.testing.assert_close(together[i, :rows, :codes], alone, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(twice["visits"][0], alone, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(twice["visits"][1], alone, atol=1e-5, rtol=1e-4)
