"""The contract every registered method keeps; a new method gets these tests by registering.

Batch = per-sample, padding scores 0, the model and the caller's tensors left as
found, two threads give the sequential result, bad options refused by name, an
out-of-range class refused. Run on the small trained Transformer of conftest.
"""

import threading

import pytest
import torch

from conftest import assert_restored, single_sample

from ehrexplain.methods import SPECS, make_interpreter

KEYS = ("conditions", "procedures")
#: Options that keep each call small; only options a method's schema declares are used.
FAST = {"steps": 8}


def _build(name, model):
    spec = SPECS[name]
    reason = spec.supports(model)
    if reason is not None:
        pytest.skip(f"{name} cannot explain this model: {reason}")
    return make_interpreter(name, model, **{k: v for k, v in FAST.items() if k in spec.options})


def _scores(result):
    return result[0] if isinstance(result, tuple) else result


@pytest.fixture(params=list(SPECS))
def method(request):
    return request.param


def test_batch_equals_each_sample_alone_and_padding_scores_zero(method, transformer, flat_batch):
    interpreter = _build(method, transformer)
    batched = _scores(interpreter.attribute(**flat_batch))
    for key in KEYS:
        assert batched[key].shape == flat_batch[key].shape
        assert (batched[key][flat_batch[key] == 0] == 0).all(), f"{method}: padding of {key!r} scored"
        assert batched[key].abs().sum() > 0
    for i in range(len(flat_batch["conditions"])):
        alone = _scores(interpreter.attribute(**single_sample(flat_batch, i, KEYS)))
        for key in KEYS:
            width = alone[key].shape[1]
            torch.testing.assert_close(batched[key][i, :width], alone[key][0], atol=2e-5, rtol=1e-4)


def test_model_and_caller_tensors_left_as_found(method, transformer, flat_batch):
    interpreter = _build(method, transformer)
    before = {key: flat_batch[key].clone() for key in KEYS}
    flags = [p.requires_grad for p in transformer.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in transformer.parameters()]
    transformer.train()
    try:
        interpreter.attribute(**flat_batch)
        assert_restored(transformer, training_before=True)
    finally:
        transformer.eval()
    assert [p.requires_grad for p in transformer.parameters()] == flags
    for param, grad in zip(transformer.parameters(), grads):
        assert (param.grad is None and grad is None) or torch.equal(param.grad, grad), f"{method} changed a .grad"
    for key in KEYS:
        assert torch.equal(flat_batch[key], before[key])


def test_two_threads_give_the_sequential_result(method, transformer, flat_batch):
    interpreter = _build(method, transformer)
    halves = [{k: v[:4] if isinstance(v, torch.Tensor) else v[:4] for k, v in flat_batch.items()},
              {k: v[4:] if isinstance(v, torch.Tensor) else v[4:] for k, v in flat_batch.items()}]
    sequential = [_scores(interpreter.attribute(**half)) for half in halves]
    threaded = [None, None]

    def run(i):
        for _ in range(3):
            threaded[i] = _scores(interpreter.attribute(**halves[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, expected in zip(threaded, sequential):
        for key in KEYS:
            assert torch.equal(got[key], expected[key])


def _wrong_value(option):
    """A value of the wrong type for ``option``: a string for numbers and flags, a number for strings."""
    return 3 if option.kind is str else "3"


def test_bad_options_are_refused_by_name(method, transformer, flat_batch):
    spec = SPECS[method]
    interpreter = _build(method, transformer)
    for name, option in spec.options.items():
        if option.where in ("init", "both"):
            with pytest.raises((TypeError, ValueError), match=rf"\b{name}\b"):
                spec.cls(transformer, **{name: _wrong_value(option)})
        if option.where in ("call", "both"):
            with pytest.raises((TypeError, ValueError), match=rf"\b{name}\b"):
                interpreter.attribute(**flat_batch, **{name: _wrong_value(option)})
    with pytest.raises(TypeError, match="unexpected keyword 'not_an_option'"):
        interpreter.attribute(**flat_batch, not_an_option=1)


@pytest.mark.parametrize("target", [2, -1, torch.tensor([0, 1, 2, 0, 0, 0, 0, 0])])
def test_out_of_range_class_is_refused(method, transformer, flat_batch, target):
    interpreter = _build(method, transformer)
    with pytest.raises(ValueError, match=r"out of range for this binary \(one logit, classes 0 and 1\) model"):
        interpreter.attribute(**flat_batch, target_class_idx=target)


def test_one_call_validates_once(method, transformer, flat_batch, monkeypatch):
    """Rollout's attribute -> rollout_matrices -> attention_maps used to check the batch three times."""
    import ehrexplain.methods._base as base

    interpreter = _build(method, transformer)
    calls, real = [], base.validate_call
    monkeypatch.setattr(base, "validate_call", lambda *args, **kwargs: calls.append(args[1].__name__) or real(*args, **kwargs))
    interpreter.attribute(**flat_batch)
    assert calls == ["attribute"]


def test_one_call_resolves_the_target_once(method, transformer, flat_batch, monkeypatch):
    """Issue 19: the boundary resolves ``target_class_idx`` once; the method reads it from the checked call."""
    import ehrexplain.core.validation as validation

    interpreter = _build(method, transformer)
    calls, real = [], validation.resolve_target
    monkeypatch.setattr(validation, "resolve_target", lambda *args, **kwargs: calls.append(args[1]) or real(*args, **kwargs))
    interpreter.attribute(**flat_batch, target_class_idx=1)
    assert calls == [1]
