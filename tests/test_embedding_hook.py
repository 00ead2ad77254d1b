"""The embedding hook: a model's own forward with substituted embeddings equals forward_from_embedding."""

import pytest
import torch

from ehrexplain import DeepLift, IntegratedGradients
from ehrexplain.methods import _embedding_space
from ehrexplain.methods._embedding_hook import embedding_layer, forward_substituted

from conftest import assert_restored


def _explain(model, batch):
    ig, ig_delta = IntegratedGradients(model, steps=16, alpha_rule="gauss_legendre").attribute(
        **batch, target_class_idx=1, return_convergence_delta=True)  # fmt: skip
    lift, lift_delta = DeepLift(model).attribute(**batch, return_convergence_delta=True)
    return ig, ig_delta, lift, lift_delta


def test_hook_path_equals_forward_from_embedding(demo_transformer, demo_cohort, monkeypatch):
    batch = demo_cohort.batch(range(12))
    cls, own_forward_calls = type(demo_transformer), []
    own = cls.forward  # PyHealth's Transformer.forward embeds, then calls forward_from_embedding itself
    monkeypatch.setattr(cls, "forward", lambda self, **kw: own_forward_calls.append(1) or own(self, **kw))
    fast = _explain(demo_transformer, batch)  # the default where the model has forward_from_embedding
    assert not own_forward_calls, "the default path ran the model's own forward, not forward_from_embedding"
    with _embedding_space.hook_path():
        hooked = _explain(demo_transformer, batch)
    assert own_forward_calls, "hook_path() did not run the model's own forward"
    assert _embedding_space.AttributionSpace.build(demo_transformer, batch, None, True).fast_path  # the default again
    for ours, reference in zip(hooked, fast):
        if isinstance(ours, dict):
            assert ours.keys() == reference.keys()
            for key in ours:
                torch.testing.assert_close(ours[key], reference[key], rtol=1e-5, atol=1e-6)
        else:
            torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    assert hooked[1].abs().max() < 1e-4 and hooked[3].abs().max() < 1e-5  # and both are converged


def test_the_hook_is_gone_and_the_loss_is_back_after_an_error(demo_transformer, demo_cohort):
    batch = demo_cohort.batch(range(3))
    space = _embedding_space.AttributionSpace.build(demo_transformer, batch, None, True)
    wrong = {key: point[:, :1] for key, point in space.inputs.items()}  # positions the model does not have
    ids = {key: space.batch.values[key] for key in wrong}
    with pytest.raises(ValueError, match=r"embedded feature '\w+' from other ids than the batch's"):
        forward_substituted(demo_transformer, space._own_kwargs({}, space.rows), wrong, ids, 3, "cpu")
    assert_restored(demo_transformer, training_before=False)
    assert "get_loss_function" not in demo_transformer.__dict__ and "prepare_y_prob" not in demo_transformer.__dict__
    assert demo_transformer(**batch)["loss"].item() > 0  # the real loss again


def test_a_feature_the_forward_never_embeds_is_named(demo_transformer, demo_cohort):
    batch = demo_cohort.batch(range(2))
    space = _embedding_space.AttributionSpace.build(demo_transformer, batch, None, True)
    layer = embedding_layer(demo_transformer)
    extra = {"unknown": torch.zeros(2, 1, 4)}
    with pytest.raises(TypeError, match=r"never passed feature\(s\) \['unknown'\] through its embedding layer EmbeddingModel"):
        forward_substituted(demo_transformer, space._own_kwargs({}, space.rows), extra, {}, 2, "cpu")
    assert not layer._forward_hooks
