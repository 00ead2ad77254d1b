"""Recurrent layers unrolled into cell loops: same outputs as the fused kernel, exact DeepLIFT through them."""

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ehrexplain import DeepLift
from ehrexplain.methods._recurrent_unroll import unrolled_recurrences


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU, nn.LSTM])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_unrolled_equals_fused(cls, batch_first, bidirectional):
    torch.manual_seed(0)
    module = cls(3, 4, num_layers=2, bidirectional=bidirectional, batch_first=batch_first).eval()
    x = torch.randn(5, 6, 3) if batch_first else torch.randn(6, 5, 3)
    packed = pack_padded_sequence(x, torch.tensor([6, 2, 4, 1, 6]), batch_first=batch_first, enforce_sorted=False)
    for inputs in (x, packed):
        fused = module(inputs)
        with unrolled_recurrences(module):
            unrolled = module(inputs)
        assert "forward" not in module.__dict__  # left as found
        out = [pad_packed_sequence(o[0], batch_first=batch_first)[0] if inputs is packed else o[0] for o in (fused, unrolled)]
        torch.testing.assert_close(out[1], out[0], rtol=1e-5, atol=1e-6)
        hidden = [torch.cat(o[1]) if cls is nn.LSTM else o[1] for o in (fused, unrolled)]
        torch.testing.assert_close(hidden[1], hidden[0], rtol=1e-5, atol=1e-6)


def test_deeplift_is_exact_through_pyhealths_rnn(flat_dataset, flat_batch):
    from pyhealth.models import RNN

    torch.manual_seed(0)
    rnn = RNN(dataset=flat_dataset, embedding_dim=8, hidden_dim=8).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no InexactDeepLiftWarning
        scores, delta = DeepLift(rnn).attribute(**flat_batch, return_convergence_delta=True)
    gap = sum(s.reshape(s.shape[0], -1).sum(1) for s in scores.values()) - delta
    assert (delta.abs() <= 1e-4 * gap.abs() + 1e-7).all(), (delta, gap)
    assert "forward" not in rnn.rnn["conditions"].rnn.__dict__
