"""DeepLift in chunks of patients (``internal_batch_size``): bounded passes, the unchunked scores, the caller's rows."""

import warnings

import pytest
import torch
from conftest import _batch, grad_pass_rows

import ehrexplain.methods._chunking as chunking
from ehrexplain.core.exceptions import InexactDeepLiftWarning
from ehrexplain.methods import DeepLift, make_interpreter
from ehrexplain.testing import FunctionModel


def _assert_same(chunked, whole):
    """Two ``(scores, delta)`` results agree to float32 rounding."""
    (scores, delta), (want, want_delta) = chunked, whole
    for key in want:
        torch.testing.assert_close(scores[key], want[key], atol=1e-6, rtol=0)
    torch.testing.assert_close(delta, want_delta, atol=1e-6, rtol=0)


def test_default_passes_hold_the_token_budget_and_give_the_one_pass_scores(transformer, flat_dataset, monkeypatch):
    """16 patients of 2 to 8 codes; a budget of 3 patients (6 rows) a pass: 6 passes, the one-pass scores and deltas."""
    batch = _batch(flat_dataset, 16)
    lengths = (batch["conditions"] != 0).sum(1)
    assert lengths.min() <= 3 and lengths.max() >= 7  # very different lengths, one padded width
    tokens = batch["conditions"].shape[1] + batch["procedures"].shape[1]
    monkeypatch.setattr(chunking, "PASS_TOKENS", 6 * tokens + 5)
    deeplift = DeepLift(transformer)
    whole = deeplift.attribute(**batch, internal_batch_size=None, return_convergence_delta=True)
    rows = grad_pass_rows(monkeypatch)
    chunked = deeplift.attribute(**batch, return_convergence_delta=True)
    # [x; b] of 3 patients a pass; the last patient alone (2 rows, as many as the heads, then 4, as many as
    # the procedures) runs again with copies of itself until no tensor has another dimension that long
    assert rows == [6] * 5 + [2, 4, 6]
    _assert_same(chunked, whole)


@pytest.mark.parametrize("size, passes", [(1, [2, 4] * 12), (2, [4] * 6), (5, [10, 12, 10, 12, 4])])
def test_chunks_of_any_size_give_the_batch_scores_where_a_tensor_is_as_long_as_a_pass(stage_attention_net,
                                                                                     nested_dataset, size, passes,
                                                                                     monkeypatch):
    """StageNet's tensors have other dimensions of 2 and 10 here: passes of 1 patient (2 rows) or 5 (10 rows) run
    again with a copy (``EXTRA_PAIRS``), the last chunk is shorter, and every chunk size gives the one-pass scores."""
    batch = _batch(nested_dataset, 12)
    deeplift = DeepLift(stage_attention_net)
    whole = deeplift.attribute(**batch, internal_batch_size=None, return_convergence_delta=True)
    rows = grad_pass_rows(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InexactDeepLiftWarning)  # no pass left ambiguous
        chunked = deeplift.attribute(**batch, internal_batch_size=size, return_convergence_delta=True)
    assert rows == passes
    _assert_same(chunked, whole)


def test_bad_internal_batch_size_is_refused_by_name(transformer, flat_batch):
    with pytest.raises(ValueError, match="DeepLift: internal_batch_size must be a positive integer, got 0"):
        DeepLift(transformer).attribute(**flat_batch, internal_batch_size=0)
    with pytest.raises(TypeError, match="internal_batch_size must be a positive integer or 'auto', got 'all'"):
        DeepLift(transformer).attribute(**flat_batch, internal_batch_size="all")
    with pytest.raises(ValueError, match="internal_batch_size must be a positive integer, got -2"):
        make_interpreter("deeplift", transformer, internal_batch_size=-2)
    assert make_interpreter("deeplift", transformer, internal_batch_size=3).call_defaults == {"internal_batch_size": 3}


def test_inexact_warning_names_the_callers_rows_when_chunked():
    """``sort`` keeps its plain gradient; only row 3 moves its argmax. One patient a pass still names row 3 of 4."""
    x = torch.tensor([[3.0, 1.0], [0.0, 5.0], [3.0, 1.0], [3.0, 1.0]])
    b = torch.tensor([[2.0, 1.0], [0.0, 0.0], [2.0, 1.0], [1.0, 2.0]])  # row 3: δ = max b - b[argmax x] = 1
    deeplift = DeepLift(FunctionModel(lambda t: t.sort(dim=1).values[:, -1]), use_embeddings=False)
    message = r"no exact rule for \['sort'\].* patients \(batch rows\) \[3\] of 4 have \|delta\| above rounding"
    with pytest.warns(InexactDeepLiftWarning, match=message) as caught:
        _, delta = deeplift.attribute(x=x, baseline={"x": b}, return_convergence_delta=True, internal_batch_size=1)
    assert len([w for w in caught if w.category is InexactDeepLiftWarning]) == 1  # one warning for the call
    torch.testing.assert_close(delta, torch.tensor([0.0, 0.0, 0.0, 1.0]))
