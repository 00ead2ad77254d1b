"""Rollout and Chefer on models with Mamba blocks (JambaEHR, EHRMamba): each block's mixing read as attention."""

import pytest
import torch
from conftest import _batch, single_sample

from ehrexplain import AttentionRollout, CheferRelevance
from ehrexplain.core.capture import as_attention_interpretable, capturing_attention
from ehrexplain.core.mamba_capture import MambaStackAdapter
from ehrexplain.core.mamba_mixing import conv_taps, gradient_weighted_map, hidden_attention, rollout_map, through_conv
from ehrexplain.methods.attention_rollout import rollout_matrix

MODELS = {
    "jamba_1_1": ("JambaEHR", dict(embedding_dim=8, heads=2, num_transformer_layers=1, num_mamba_layers=1)),
    "jamba_default": ("JambaEHR", dict(embedding_dim=8)),
    "ehrmamba": ("EHRMamba", dict(embedding_dim=8, num_layers=2)),
}


def _model(dataset, name):
    import pyhealth.models

    cls, options = MODELS[name]
    torch.manual_seed(0)
    return getattr(pyhealth.models, cls)(dataset=dataset, **options).eval()


def _mamba_blocks(model):
    from pyhealth.models.ehrmamba import MambaBlock

    return [m for m in model.modules() if isinstance(m, MambaBlock)]


@pytest.fixture(scope="module")
def batch(flat_dataset):
    return _batch(flat_dataset, 4)


class _SSMRecorder:
    """Wraps one block's ``_ssm_step`` (test side only) to record its input, output and the output's gradient."""

    def __init__(self, block):
        self.block, self.original = block, block._ssm_step
        block._ssm_step = self

    def __call__(self, u):
        self.u, self.y = u, self.original(u)
        if self.y.requires_grad:
            self.y.retain_grad()
        return self.y

    def remove(self):
        del self.block._ssm_step


@pytest.mark.parametrize("name", MODELS)
def test_hidden_attention_is_the_blocks_real_mixing(flat_dataset, batch, name):
    model = _model(flat_dataset, name)
    recorders = [_SSMRecorder(block) for block in _mamba_blocks(model)]
    with torch.no_grad():
        model(**batch)
    for recorder in recorders:
        recorder.remove()
        alpha = hidden_attention(recorder.block, recorder.u.shape[1])
        mixed = torch.einsum("dts,bsd->btd", alpha, recorder.u)
        assert torch.allclose(mixed, recorder.y, atol=1e-5), (mixed - recorder.y).abs().max()


def test_chefer_map_of_a_block_is_the_positive_part_per_channel():
    from pyhealth.models.ehrmamba import MambaBlock

    torch.manual_seed(0)
    block, u, g = MambaBlock(d_model=4, conv_kernel=1), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    per_channel = hidden_attention(block, 5) * g.transpose(1, 2)[..., :, None] * u.transpose(1, 2)[..., None, :]
    assert torch.allclose(gradient_weighted_map(block, u, g), per_channel.clamp(min=0).mean(1), atol=1e-6)


@pytest.mark.parametrize("values", [1, 5 * 5 * 2 * 3])  # one channel per chunk; 3 of 8, the last chunk short
def test_chefer_map_in_channel_chunks_is_the_whole_map(monkeypatch, values):
    """Memory: the per-channel maps are summed in chunks of CHANNEL_MAP_VALUES, with the same result."""
    from pyhealth.models.ehrmamba import MambaBlock

    import ehrexplain.core.mamba_mixing as mixing

    torch.manual_seed(0)
    block, u, g = MambaBlock(d_model=4), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    whole = gradient_weighted_map(block, u, g)
    monkeypatch.setattr(mixing, "CHANNEL_MAP_VALUES", values)
    assert torch.allclose(gradient_weighted_map(block, u, g), whole, atol=1e-6)


def test_conv_taps_compose_as_a_dense_causal_map():
    torch.manual_seed(0)
    conv, mixing = torch.nn.Conv1d(3, 3, 4, padding=3), torch.rand(2, 3, 6, 6)
    taps = conv_taps(conv, 6)
    dense = torch.zeros(3, 6, 6)  # [channel, s', s]: s' reads s = s' - lag
    for lag in range(4):
        for position in range(lag, 6):
            dense[:, position, position - lag] = taps[:, position, lag]
    assert torch.allclose(dense.sum(-1), torch.ones(3, 6))
    assert torch.allclose(through_conv(mixing, taps), torch.einsum("bdts,dsr->btr", mixing, dense) / 3, atol=1e-6)


def test_hooks_capture_the_ssm_input_and_its_output_gradient(flat_dataset, batch):
    model = _model(flat_dataset, "jamba_1_1")
    view = as_attention_interpretable(model, needs_gradients=True)
    [recorder] = [_SSMRecorder(block) for block in _mamba_blocks(model)[:1]]
    with capturing_attention(view, gradients=True):
        model(**batch)["logit"].sum().backward()
    recorder.remove()
    record = next(r for records in view._records.values() for r in records if r.block is recorder.block)
    assert torch.equal(record.u, recorder.u)
    assert torch.allclose(record.grad, recorder.y.grad, atol=1e-7)


def test_a_shifting_mamba_block_moves_the_rollout(flat_dataset, batch):
    """Conv reads only lag 1 (lag 0: 1e-6), SSM is the identity: the block's map shifts by one position."""
    import pyhealth.models

    model = pyhealth.models.EHRMamba(dataset=flat_dataset, embedding_dim=8, num_layers=1).eval()
    with torch.no_grad():
        [block] = model.blocks["conditions"]
        block.conv1d.weight.zero_()
        block.conv1d.weight[:, :, -2] = 1.0  # the tap before the last one reads position t - 1
        block.conv1d.weight[:, :, -1] = 1e-6
        block.C_param.zero_()
    scores = AttentionRollout(model)(**batch)["conditions"]
    rows, last = torch.arange(4), (batch["conditions"] != 0).sum(-1) - 1
    half = torch.full((4,), 0.5)
    assert torch.allclose(scores[rows, last], half, atol=1e-5)  # the residual's half stays
    assert torch.allclose(scores[rows, last - 1], half, atol=1e-5)  # the block's half moved one position back


def test_rollout_composes_mamba_and_attention_blocks_in_layer_order(flat_dataset, batch):
    model = _model(flat_dataset, "jamba_1_1")  # schedule: mamba, transformer
    interpreter = AttentionRollout(model)
    maps = interpreter.attention_maps(**batch)["conditions"]
    length = batch["conditions"].shape[1]
    assert torch.allclose(maps[0], rollout_map(model.jamba["conditions"].layers[0], length).expand_as(maps[0]))
    attention_only = rollout_matrix(maps[1:])
    full = interpreter.rollout_matrices(**batch)["conditions"]
    assert torch.allclose(full, rollout_matrix(maps[1:]) @ rollout_matrix(maps[:1]))
    assert not torch.allclose(full, attention_only, atol=1e-3)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", ["rollout", "chefer"])
def test_scores_are_non_negative_per_patient_and_zero_on_padding(flat_dataset, batch, name, method):
    model = _model(flat_dataset, name)
    explain = (lambda **d: AttentionRollout(model)(**d)) if method == "rollout" else CheferRelevance(model).attribute
    scores = explain(**batch)
    i = int((batch["conditions"] != 0).sum(-1).argmin())
    alone = explain(**single_sample(batch, i, ["conditions", "procedures"]))
    for key in ("conditions", "procedures"):
        assert (scores[key] >= 0).all() and (scores[key][batch[key] == 0] == 0).all()
        assert torch.allclose(alone[key][0], scores[key][i, : alone[key].shape[1]], atol=1e-5)
        if method == "rollout":
            assert torch.allclose(scores[key].sum(-1), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize("method", ["rollout", "chefer"])
def test_the_model_is_left_as_found(flat_dataset, batch, method):
    model = _model(flat_dataset, "jamba_1_1").train()
    (AttentionRollout(model) if method == "rollout" else CheferRelevance(model)).attribute(**batch)
    assert model.training
    for module in model.modules():
        assert not (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks), module
        assert "_ssm_step" not in vars(module)
    assert all(p.grad is None for p in model.parameters())


def test_adapter_is_selected_for_mamba_models(flat_dataset):
    for name in MODELS:
        assert isinstance(as_attention_interpretable(_model(flat_dataset, name)), MambaStackAdapter)
