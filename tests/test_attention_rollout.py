"""Attention Rollout: properties of the method, parity with PyHealth, bad input."""

import pytest
import torch
from conftest import assert_restored, single_sample

from ehrexplain import AttentionRollout
from ehrexplain.core.capture import as_attention_interpretable
from ehrexplain.methods.attention_rollout import discard_lowest, fuse_heads, rollout_matrix
from ehrexplain.testing import StaticAttentionModel


def random_attention(batch=2, heads=3, seq=5, layers=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, heads, seq, seq, generator=generator, dtype=torch.float64).softmax(-1)
        for _ in range(layers)
    ]


# --- the pure algorithm on hand-made attention stacks -------------------------------


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.4])
def test_rollout_matrix_is_row_stochastic(head_fusion, discard_ratio):
    rollout = rollout_matrix(random_attention(), head_fusion, discard_ratio)
    assert (rollout >= 0).all()
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5, dtype=torch.float64))


def test_identity_attention_gives_identity_rollout():
    eye = torch.eye(4, dtype=torch.float64).expand(2, 3, 4, 4)
    assert torch.equal(rollout_matrix([eye, eye, eye]), torch.eye(4, dtype=torch.float64).expand(2, 4, 4))


def test_rollout_composes_later_layers_on_the_left():
    first, second = [a.mean(1) for a in random_attention(layers=2, seed=3)]
    eye = torch.eye(5, dtype=torch.float64)
    expected = (0.5 * (second + eye)) @ (0.5 * (first + eye))
    torch.testing.assert_close(rollout_matrix([first, second]), expected)


def test_max_and_min_fusion_by_hand():
    # Two heads over two tokens; rows of each head sum to 1.
    heads = torch.tensor([[[[0.9, 0.1], [0.3, 0.7]], [[0.2, 0.8], [0.6, 0.4]]]], dtype=torch.float64)
    assert torch.equal(fuse_heads(heads, "max"), torch.tensor([[[0.9, 0.8], [0.6, 0.7]]], dtype=torch.float64))
    assert torch.equal(fuse_heads(heads, "min"), torch.tensor([[[0.2, 0.1], [0.3, 0.4]]], dtype=torch.float64))
    # max-fused row [0.9, 0.8] renormalised is [9/17, 8/17]; then 0.5 * (A + I).
    rollout = rollout_matrix([heads], head_fusion="max")
    torch.testing.assert_close(rollout[0, 0], torch.tensor([0.5 + 4.5 / 17, 4 / 17], dtype=torch.float64))
    rollout = rollout_matrix([heads], head_fusion="min")
    torch.testing.assert_close(rollout[0, 1], torch.tensor([0.5 * 3 / 7, 0.5 + 0.5 * 4 / 7], dtype=torch.float64))


def test_discard_ratio_drops_the_weakest_weights_of_each_row():
    attn = torch.tensor([[[0.1, 0.5, 0.15, 0.25], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.3, 0.2], [0.7, 0.1, 0.1, 0.1]]])
    kept = discard_lowest(attn, 0.5)  # two of four weights per row
    assert (kept > 0).sum(-1).tolist() == [[2, 2, 2, 2]]
    assert torch.equal(kept[0, 0], torch.tensor([0.0, 0.5, 0.0, 0.25]))
    assert torch.equal(kept[0, 1], torch.tensor([0.4, 0.3, 0.0, 0.0]))
    # After renormalising, row 0 of the single-layer rollout is 0.5 * ([0, 2/3, 0, 1/3] + e_0).
    rollout = rollout_matrix([attn.unsqueeze(1)], discard_ratio=0.5)
    torch.testing.assert_close(rollout[0, 0], torch.tensor([0.5, 1 / 3, 0.0, 1 / 6]))
    assert torch.equal(discard_lowest(attn, 0.0), attn)


def test_discard_ratio_counts_only_unmasked_weights():
    """A padded key (weight 0) is not one of the weights to discard: the result equals the unpadded row's."""
    row = torch.tensor([[[0.1, 0.5, 0.15, 0.25]]])
    padded = torch.cat([row, torch.zeros(1, 1, 3)], dim=-1)
    torch.testing.assert_close(discard_lowest(padded, 0.5)[..., :4], discard_lowest(row, 0.5))
    assert torch.equal(discard_lowest(padded, 0.5)[..., 4:], torch.zeros(1, 1, 3))


def test_interpreter_on_a_hand_made_stack_reads_row_zero():
    stack = random_attention(batch=1, layers=2, seed=5)
    model = StaticAttentionModel(stack)
    scores = AttentionRollout(model, head_fusion="max")(codes=torch.tensor([[3, 4, 5, 6, 7]]))["codes"]
    torch.testing.assert_close(scores[0].double(), rollout_matrix(stack, "max")[0, 0])


# --- on trained PyHealth models ------------------------------------------------------


def test_scores_are_a_distribution_over_tokens(transformer, flat_batch):
    scores = AttentionRollout(transformer).attribute(**flat_batch)
    for key, score in scores.items():
        assert score.shape == flat_batch[key].shape
        assert (score >= 0).all()
        torch.testing.assert_close(score.sum(-1), torch.ones(8))


def test_rollout_matrices_of_the_model_are_row_stochastic(transformer, flat_batch):
    for matrix in AttentionRollout(transformer).rollout_matrices(**flat_batch).values():
        torch.testing.assert_close(matrix.sum(-1), torch.ones(matrix.shape[:2]))


def test_padding_gets_no_relevance(transformer, flat_batch, stage_attention_net, nested_batch):
    flat = AttentionRollout(transformer)(**flat_batch)
    for key, score in flat.items():
        padding = flat_batch[key] == 0
        assert padding.any(), "fixture should contain padding"
        assert score[padding].abs().max() < 1e-12
    nested = AttentionRollout(stage_attention_net)(**nested_batch)["visits"]
    assert nested.shape == nested_batch["visits"].shape
    assert (nested[nested_batch["visits"] == 0] == 0).all()


def test_nested_scores_repeat_the_visit_score_over_its_codes(stage_attention_net, nested_batch):
    rollout = AttentionRollout(stage_attention_net)
    view = as_attention_interpretable(stage_attention_net)
    per_visit = view.get_relevance_tensor(rollout.rollout_matrices(**nested_batch), **nested_batch)["visits"]
    torch.testing.assert_close(per_visit.sum(-1), torch.ones(per_visit.shape[0]))
    expanded = rollout(**nested_batch)["visits"]
    real = nested_batch["visits"] != 0
    torch.testing.assert_close(expanded, per_visit[:, :, None].expand_as(expanded) * real)


def test_target_class_is_ignored(multiclass_transformer, multiclass_batch):
    rollout = AttentionRollout(multiclass_transformer)
    a = rollout.attribute(target_class_idx=0, **multiclass_batch)
    b = rollout.attribute(target_class_idx=2, **multiclass_batch)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode, torch.enable_grad])
def test_builds_no_autograd_graph_in_any_context(transformer, flat_batch, context):
    grad_enabled_in_forward = []
    handle = transformer.fc.register_forward_hook(lambda *_: grad_enabled_in_forward.append(torch.is_grad_enabled()))
    try:
        with context():
            scores = AttentionRollout(transformer).attribute(**flat_batch)
    finally:
        handle.remove()
    assert grad_enabled_in_forward == [False]
    assert all(s.grad_fn is None and not s.requires_grad for s in scores.values())


@pytest.mark.parametrize("head_fusion, discard_ratio", [("mean", 0.0), ("mean", 0.5), ("max", 0.3)])
def test_batch_equals_per_sample(transformer, flat_batch, stage_attention_net, nested_batch, head_fusion, discard_ratio):
    """Padding added by the batch must change nothing, also when weights are discarded."""
    for model, batch in [(transformer, flat_batch), (stage_attention_net, nested_batch)]:
        rollout = AttentionRollout(model, head_fusion=head_fusion, discard_ratio=discard_ratio)
        batched = rollout(**batch)
        for i in range(len(batch["label"])):
            alone = rollout(**single_sample(batch, i, model.feature_keys))
            for key, score in alone.items():
                index = (i,) + tuple(slice(0, n) for n in score.shape[1:])
                torch.testing.assert_close(batched[key][index], score[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("model_name, batch_name", [("transformer", "flat_batch"), ("stage_attention_net", "nested_batch")])
def test_equals_pyhealth_rollout(model_name, batch_name, request):
    from pyhealth.interpret.methods import AttentionRollout as PyHealthRollout

    model, batch = request.getfixturevalue(model_name), request.getfixturevalue(batch_name)
    ours = AttentionRollout(model).attribute(**batch)
    theirs = PyHealthRollout(model).attribute(**batch)
    for key in ours:
        # PyHealth repeats a visit's score over padding codes too; ehrexplain zeroes padding.
        torch.testing.assert_close(ours[key], theirs[key] * (batch[key] != 0), atol=1e-6, rtol=0)


# --- the model is left as found; bad input ------------------------------------------


def test_model_left_as_found(transformer, flat_batch):
    transformer.train()
    modules_before = [id(m) for m in transformer.modules()]
    try:
        AttentionRollout(transformer, head_fusion="min", discard_ratio=0.2)(**flat_batch)
        assert_restored(transformer, training_before=True)
        assert [id(m) for m in transformer.modules()] == modules_before
    finally:
        transformer.eval()


def test_rejects_model_without_attention(flat_dataset):
    from pyhealth.models import MLP

    with pytest.raises(TypeError, match="set_attention_hooks.*get_attention_layers.*get_relevance_tensor"):
        AttentionRollout(MLP(dataset=flat_dataset, embedding_dim=8, hidden_dim=8))


def test_missing_feature_key_is_named(transformer, flat_batch):
    batch = {k: v for k, v in flat_batch.items() if k != "procedures"}
    with pytest.raises(KeyError, match="procedures"):
        AttentionRollout(transformer)(**batch)
    assert_restored(transformer, training_before=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"head_fusion": "median"}, "head_fusion"),
    ({"discard_ratio": 1.0}, "discard_ratio"),
    ({"discard_ratio": -0.1}, "discard_ratio"),
])
def test_bad_options(transformer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttentionRollout(transformer, **kwargs)


@pytest.mark.parametrize("method", ["rollout", "chefer"])
def test_the_row_path_gives_the_full_matrices_row(monkeypatch, transformer, flat_batch, method):
    """Long records compose only the row the model reads (O(L²) a layer); the scores are those of the full matrices."""
    import ehrexplain.methods._base as base
    import ehrexplain.methods.attention_rollout as rollout_module
    import ehrexplain.methods.chefer as chefer_module
    from ehrexplain.methods import make_interpreter

    full = make_interpreter(method, transformer).attribute(**flat_batch)
    module, name = (rollout_module, "rollout_rows") if method == "rollout" else (chefer_module, "relevance_rows")
    calls = []
    row_function = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args, **kwargs: calls.append(1) or row_function(*args, **kwargs))
    monkeypatch.setattr(base, "ROW_PATH_POSITIONS", 0)  # as if every record were long
    rows = make_interpreter(method, transformer).attribute(**flat_batch)
    assert calls, "the row path did not run"
    for key in full:
        torch.testing.assert_close(rows[key], full[key], rtol=1e-5, atol=1e-6)


def test_a_readout_that_is_not_one_row_keeps_the_full_matrices(monkeypatch, transformer, flat_batch):
    from ehrexplain.core.capture import as_attention_interpretable

    view = as_attention_interpretable(transformer)
    sizes = {key: (8, flat_batch[key].shape[1]) for key in transformer.feature_keys}
    assert {k: r.tolist() for k, r in view.relevance_rows(sizes, **flat_batch).items()} == {k: [0] * 8 for k in sizes}
    monkeypatch.setattr(transformer, "get_relevance_tensor", lambda R, **data: {k: v.mean(1) for k, v in R.items()})
    assert view.relevance_rows(sizes, **flat_batch) is None
