"""DeepLift's exact rules: Σ attributions = f(x) - f(b) on attention models, closed forms on toys."""

import pytest
import torch
from conftest import assert_restored, total
from torch import nn

from ehrexplain.methods import DeepLift
from ehrexplain.methods._deeplift_rules import InexactDeepLiftWarning
from ehrexplain.testing import FunctionModel

#: The exactness target: |Σ attributions - (f(x) - f(b))| <= TOLERANCE × |f(x) - f(b)| per sample (float32).
TOLERANCE = 1e-4


def relative_delta(model, batch, target_class_idx=None, **options):
    scores, delta = DeepLift(model, **options).attribute(
        **batch, target_class_idx=target_class_idx, return_convergence_delta=True
    )
    gap = total(scores) - delta
    return (delta.abs() / gap.abs()).max().item()


def toy(function, x, b, **options):
    return DeepLift(FunctionModel(function), use_embeddings=False, **options).attribute(
        x=x, baseline={"x": b}, return_convergence_delta=True
    )


def test_product_gets_its_shapley_split():
    x, b = torch.tensor([[3.0, -2.0], [0.5, 4.0]]), torch.tensor([[1.0, 1.0], [-1.0, 2.0]])
    scores, delta = toy(lambda t: t[:, 0] * t[:, 1], x, b)
    a, c, a0, c0 = x[:, 0], x[:, 1], b[:, 0], b[:, 1]
    expected = torch.stack([(a - a0) * (c + c0) / 2, (c - c0) * (a + a0) / 2], dim=1)
    torch.testing.assert_close(scores["x"], expected)
    assert delta.abs().max() < 1e-6


@pytest.mark.parametrize("op", ["matmul", "einsum", "division"])
def test_bilinear_ops_and_division_are_exact(op):
    torch.manual_seed(0)
    x, b = torch.randn(5, 6) * 2, torch.randn(5, 6)
    functions = {
        "matmul": lambda t: torch.matmul(t[:, None, :3], t[:, 3:, None]).flatten(),
        "einsum": lambda t: torch.einsum("bi,bj->bij", t[:, :3], t[:, 3:]).sum((1, 2)),
        "division": lambda t: (t[:, :3] / (t[:, 3:] ** 2 + 1)).sum(1),
    }
    _, exact = toy(functions[op], x, b)
    _, plain = toy(functions[op], x, b, multiplier_rule="gradient")
    assert exact.abs().max() < 1e-5 < plain.abs().max()


@pytest.mark.parametrize("block", ["softmax", "layer_norm"])
def test_softmax_and_layer_norm_are_exact(block):
    torch.manual_seed(1)
    x, b = torch.randn(4, 6) * 3, torch.randn(4, 6)
    if block == "softmax":  # exp(90) overflows float32: the rule must shift the logits
        x, b = x + 90, b + 90
    weights = torch.randn(6)
    norm = nn.LayerNorm(6)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    functions = {
        "softmax": lambda t: (torch.softmax(t, dim=-1) * weights).sum(1),
        "layer_norm": lambda t: (norm(t) * weights).sum(1),
    }
    _, exact = toy(functions[block], x, b)
    _, plain = toy(functions[block], x, b, multiplier_rule="gradient")
    assert exact.abs().max() < TOLERANCE < plain.abs().max()


def test_exact_on_trained_transformers(transformer, flat_batch, multiclass_transformer, multiclass_batch):
    assert relative_delta(transformer, flat_batch) < TOLERANCE
    for target in range(3):
        assert relative_delta(multiclass_transformer, multiclass_batch, target_class_idx=target) < TOLERANCE
    assert relative_delta(transformer, flat_batch, multiplier_rule="gradient") > 1e-2  # the shortcut is not


@pytest.mark.parametrize("heads,layers", [(1, 1), (4, 3)])
def test_exact_on_other_transformer_shapes(flat_dataset, flat_batch, heads, layers):
    from pyhealth.models import Transformer

    torch.manual_seed(heads + layers)
    model = Transformer(dataset=flat_dataset, embedding_dim=16, heads=heads, num_layers=layers).eval()
    assert relative_delta(model, flat_batch) < TOLERANCE


def test_exact_on_nested_stage_attention_net(stage_attention_net, nested_batch):
    assert relative_delta(stage_attention_net, nested_batch) < TOLERANCE


def test_exact_on_mlp(flat_mlp, flat_batch):
    assert relative_delta(flat_mlp, flat_batch) < TOLERANCE


@pytest.mark.parametrize("form", ["values", "amax", "keepdim"])
def test_max_along_a_dimension_is_exact(form):
    """max passes max(z_x) - max(z_b) to a winner (Shrikumar et al.'s scaled gradient); the plain gradient does not."""
    torch.manual_seed(2)
    x, b = torch.randn(6, 8) * 2, torch.randn(6, 8)
    b[0] = x[0]  # nothing moves: zero scores
    b[1, x[1].argmax()] = x[1].max()  # the input's winner did not move: the baseline's winner carries the change
    weights = torch.randn(4, 4)
    functions = {
        "values": lambda t: (t.view(-1, 2, 4) @ weights).tanh().max(dim=-1).values.sum(1),
        "amax": lambda t: torch.amax((t.view(-1, 2, 4) @ weights).tanh(), dim=1).sum(1),
        "keepdim": lambda t: torch.max(t.view(-1, 2, 4), 2, keepdim=True)[0].flatten(1).sum(1),
    }
    scores, exact = toy(functions[form], x, b)
    _, plain = toy(functions[form], x, b, multiplier_rule="gradient")
    assert exact.abs().max() < 1e-5 < plain.abs().max()
    assert (scores["x"][0] == 0).all()


def test_max_along_the_patient_dimension_and_training_batch_norm_are_named_eval_batch_norm_exact():
    x, b = torch.randn(3, 4), torch.zeros(3, 4)
    with pytest.warns(InexactDeepLiftWarning, match=r"max \(not along one dimension"):
        toy(lambda t: t.max(dim=0).values.sum() + t.sum(1), x, b)
    norm = nn.BatchNorm1d(4).train()  # not the model's submodule, so DeepLift leaves it in training mode
    with pytest.warns(InexactDeepLiftWarning, match="batch_norm .training mode"):
        toy(lambda t: norm(t).tanh().sum(1), x, b)
    _, delta = toy(lambda t: norm.eval()(t).tanh().sum(1), x, b)
    assert delta.abs().max() < 1e-5


def test_ill_conditioned_softmax_is_named():
    x, b = torch.tensor([[30.0, 0.0, 1.0]]), torch.zeros(1, 3)
    with pytest.warns(InexactDeepLiftWarning, match="softmax .*ill-conditioned"):
        toy(lambda t: torch.softmax(t, dim=-1)[:, 1], x, b)


class GruScore(nn.Module):
    """A GRU over the features of ``x`` read as a sequence; its last hidden state summed."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(1, 4, batch_first=True)

    def forward(self, x):
        return self.gru(x[:, :, None])[0][:, -1].sum(1)


def test_gru_is_unrolled_and_exact():
    """The fused GRU kernel runs as its cell loop (_recurrent_unroll), so every gate gets an exact rule."""
    import warnings

    torch.manual_seed(3)
    x, b = torch.randn(3, 5), torch.zeros(3, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InexactDeepLiftWarning)
        _, delta = toy(GruScore(), x, b)
    assert delta.abs().max() < 1e-5


def test_model_left_as_found_after_error(transformer, flat_batch):
    bad = {**flat_batch, "conditions": flat_batch["conditions"][:3]}  # fails inside the model's forward
    flags = [p.requires_grad for p in transformer.parameters()]
    modules = list(transformer.modules())
    transformer.train()
    try:
        with pytest.raises(Exception):
            DeepLift(transformer).attribute(**bad)
        assert_restored(transformer, training_before=True)
    finally:
        transformer.eval()
    assert [p.requires_grad for p in transformer.parameters()] == flags and all(flags)
    assert list(transformer.modules()) == modules
    assert torch._C._len_torch_function_stack() == 0  # no mode left on the stack


def test_exact_under_no_grad(transformer, flat_batch):
    with torch.no_grad():
        assert relative_delta(transformer, flat_batch) < TOLERANCE


def test_unknown_rule_is_refused(transformer):
    with pytest.raises(ValueError, match="multiplier_rule must be one of"):
        DeepLift(transformer, multiplier_rule="rescale")


def test_agrees_with_captum_on_relu_network():
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 1))
    x, b = torch.randn(7, 5) * 2, torch.randn(7, 5)
    ours, _ = toy(net, x, b)
    theirs = captum.DeepLift(net).attribute(x, baselines=b)
    torch.testing.assert_close(ours["x"], theirs, atol=1e-5, rtol=1e-4)


def test_exact_on_trained_transformer_with_labs(lab_dataset, lab_batch):
    """Codes and a continuous lab vector (projected, not looked up): still exact, raw-space lab scores."""
    from pyhealth.models import Transformer

    from ehrexplain.data.training import train_model

    torch.manual_seed(5)
    model = train_model(Transformer(dataset=lab_dataset, embedding_dim=16, heads=2, num_layers=2), lab_dataset,
                        epochs=3, seed=5)
    assert relative_delta(model, lab_batch) < TOLERANCE
    scores = DeepLift(model).attribute(**lab_batch)
    assert scores["labs"].shape == lab_batch["labs"].shape and scores["labs"].abs().sum() > 0


@pytest.mark.parametrize("eps", [1e-5, 1e-12])
def test_layer_norm_of_a_constant_row_stays_finite_and_exact(eps):
    """A row equal in input and baseline and constant (variance 0): rsqrt is met at eps, not past it."""
    torch.manual_seed(6)
    weights = torch.randn(6)
    x, b = torch.randn(3, 6), torch.randn(3, 6)
    x[0] = b[0] = 0.7  # constant, and the same in input and baseline
    scores, delta = toy(lambda t: (nn.functional.layer_norm(t, (6,), eps=eps) * weights).sum(1), x, b)
    assert torch.isfinite(scores["x"]).all() and delta.abs().max() < TOLERANCE


def test_rules_pair_input_and_baseline_rows_where_another_dimension_is_as_long():
    """``tanh(tᵀ)`` holds ``[features, batch]``: with 2 features and 1 sample (2 rows) dimension 0 is as long as the
    batch, and the rules used to pair the two features instead of the input with its baseline."""
    x, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, -1.0]])
    scores, delta = toy(lambda t: torch.tanh(t.transpose(0, 1)).transpose(0, 1).sum(1), x, b)
    torch.testing.assert_close(scores["x"], torch.tanh(x) - torch.tanh(b))  # Rescale of an elementwise op
    assert delta.abs().max() < 1e-6


def test_inexact_warning_names_the_patients_it_affects():
    """``sort`` keeps its plain gradient: exact where the baseline's maximum sits where the input's does."""
    x = torch.tensor([[3.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    b = torch.tensor([[1.0, 2.0], [2.0, 1.0], [0.0, 0.0]])  # row 0: argmax moves, δ = max b - b[argmax x] = 1
    message = r"no exact rule for \['sort'\].* patients \(batch rows\) \[0\] of 3 have \|delta\| above rounding, up to 1 logits"
    with pytest.warns(InexactDeepLiftWarning, match=message):
        _, delta = toy(lambda t: t.sort(dim=1).values[:, -1], x, b)
    torch.testing.assert_close(delta, torch.tensor([1.0, 0.0, 0.0]))
