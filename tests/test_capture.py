"""The split interface and the adapter that gives it to plain, trained PyHealth models."""

import io

import pytest
import torch
from conftest import assert_restored

from ehrexplain import AttentionInterpretable, CheferInterpretable, GradientInterpretable
from ehrexplain.core.capture import PyHealthAttentionAdapter, as_attention_interpretable, capturing_attention
from ehrexplain.core.interfaces import missing_attention_methods
from ehrexplain.testing import OneLayerAttentionToy, StaticAttentionModel


def test_interface_levels():
    assert CheferInterpretable is GradientInterpretable
    assert issubclass(GradientInterpretable, AttentionInterpretable)
    assert isinstance(StaticAttentionModel([]), AttentionInterpretable)
    assert not isinstance(StaticAttentionModel([]), GradientInterpretable)
    assert isinstance(OneLayerAttentionToy(), GradientInterpretable)
    with pytest.raises(TypeError):
        AttentionInterpretable()


def test_native_models_are_used_as_they_are():
    toy = OneLayerAttentionToy()
    assert as_attention_interpretable(toy, needs_gradients=True) is toy


def test_missing_methods_are_named():
    class HalfDone:
        def set_attention_hooks(self, enabled):
            pass

    assert missing_attention_methods(HalfDone()) == ["get_attention_layers", "get_relevance_tensor"]
    with pytest.raises(TypeError, match="Rollout needs attention maps.*HalfDone.*get_attention_layers, get_relevance_tensor"):
        as_attention_interpretable(HalfDone(), method="Rollout")


@pytest.fixture
def reloaded_transformer(transformer, flat_dataset):
    """A plain PyHealth Transformer rebuilt from a saved checkpoint, as a user would load it."""
    from pyhealth.models import Transformer

    buffer = io.BytesIO()
    torch.save(transformer.state_dict(), buffer)
    buffer.seek(0)
    fresh = Transformer(dataset=flat_dataset, embedding_dim=32, heads=2, num_layers=2, dropout=0.1)
    fresh.load_state_dict(torch.load(buffer))
    return fresh.eval()


def test_plain_checkpointed_transformer_satisfies_both_levels(reloaded_transformer, flat_batch):
    view = as_attention_interpretable(reloaded_transformer, needs_gradients=True)
    assert isinstance(view, PyHealthAttentionAdapter)
    assert isinstance(view, GradientInterpretable) and isinstance(view, AttentionInterpretable)
    assert type(reloaded_transformer).__name__ == "Transformer"  # not replaced or subclassed


def test_forward_only_capture_under_no_grad(reloaded_transformer, flat_batch):
    view = as_attention_interpretable(reloaded_transformer)
    with torch.no_grad(), capturing_attention(view, gradients=False):
        reloaded_transformer(**flat_batch)
    layers = view.get_attention_layers()
    assert set(layers) == {"conditions", "procedures"}
    for key, pairs in layers.items():
        assert len(pairs) == 2  # num_layers
        seq = flat_batch[key].shape[1]
        for attn, grad in pairs:
            assert grad is None
            assert attn.shape == (8, 2, seq, seq)
            torch.testing.assert_close(attn.sum(-1), torch.ones(8, 2, seq))
    assert_restored(reloaded_transformer, training_before=False)


def test_captured_maps_and_grads_equal_pyhealths_own(reloaded_transformer, flat_batch):
    model = reloaded_transformer
    view = as_attention_interpretable(model)
    with capturing_attention(view, gradients=True):
        logits = model(**flat_batch)["logit"]
    logits.sum().backward()
    ours = view.get_attention_layers()

    model.set_attention_hooks(True)  # PyHealth's own capture, for reference
    model(**flat_batch)["logit"].sum().backward()
    model.set_attention_hooks(False)
    theirs = model.get_attention_layers()
    for key in ours:
        for (attn, grad), (ref_attn, ref_grad) in zip(ours[key], theirs[key]):
            torch.testing.assert_close(attn, ref_attn)
            torch.testing.assert_close(grad, ref_grad)


def test_gradient_capture_is_skipped_when_autograd_is_off(reloaded_transformer, flat_batch):
    view = as_attention_interpretable(reloaded_transformer)
    with torch.inference_mode(), capturing_attention(view, gradients=True):
        reloaded_transformer(**flat_batch)
    assert all(grad is None for pairs in view.get_attention_layers().values() for _, grad in pairs)


def test_stage_attention_net_adapter(stage_attention_net, nested_batch):
    view = as_attention_interpretable(stage_attention_net, needs_gradients=True)
    with torch.no_grad(), capturing_attention(view, gradients=False):
        stage_attention_net(**nested_batch)
    (attn, grad), = view.get_attention_layers()["visits"]
    visits = nested_batch["visits"].shape[1]
    assert attn.shape[-2:] == (visits, visits) and grad is None
    reduced = view.get_relevance_tensor({"visits": attn.mean(1)}, **nested_batch)["visits"]
    assert reduced.shape == (nested_batch["visits"].shape[0], visits)


def test_hooks_are_removed_when_capture_stops(reloaded_transformer):
    view = PyHealthAttentionAdapter(reloaded_transformer)
    view.set_attention_hooks(True, capture_gradients=False)
    assert view.hooks_active
    view.set_attention_hooks(False)
    assert not view.hooks_active
    assert_restored(reloaded_transformer, training_before=False)


def test_layers_before_any_capture_is_an_error(reloaded_transformer):
    with pytest.raises(RuntimeError, match="set_attention_hooks"):
        PyHealthAttentionAdapter(reloaded_transformer).get_attention_layers()
