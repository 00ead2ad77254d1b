"""Two threads, one model: every pair of methods gives the sequential results and leaves the model as found."""

import itertools
import threading

import pytest
import torch
from conftest import assert_restored

from ehrexplain import AttentionRollout, CheferRelevance, DeepLift, IntegratedGradients

BUILDERS = {
    "rollout": AttentionRollout,
    "chefer": CheferRelevance,
    "integrated_gradients": lambda model: IntegratedGradients(model, steps=4),
    "deeplift": DeepLift,
}
ROUNDS = 3


def _run_pair(interpreters, batch):
    results, errors = {name: [] for name in interpreters}, []
    start = threading.Barrier(len(interpreters))

    def work(name):
        try:
            start.wait()
            for _ in range(ROUNDS):
                results[name].append(interpreters[name].attribute(**batch))
        except Exception as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(name,)) for name in interpreters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


@pytest.mark.parametrize("pair", list(itertools.combinations(BUILDERS, 2)), ids="+".join)
def test_two_threads_equal_sequential(transformer, flat_batch, pair):
    interpreters = {name: BUILDERS[name](transformer) for name in pair}
    expected = {name: interpreter.attribute(**flat_batch) for name, interpreter in interpreters.items()}
    grads = {name: torch.full_like(p, 0.5) for name, p in transformer.named_parameters()}
    for name, param in transformer.named_parameters():
        param.grad = grads[name].clone()
    was_training = transformer.training
    transformer.train()
    try:
        results, errors = _run_pair(interpreters, flat_batch)
        assert not errors, errors
        for name, runs in results.items():
            assert len(runs) == ROUNDS
            for run in runs:
                for key in expected[name]:
                    torch.testing.assert_close(run[key], expected[name][key], rtol=0, atol=0)
        assert_restored(transformer, training_before=True)
        for name, param in transformer.named_parameters():
            assert torch.equal(param.grad, grads[name]), f"grad of {name} changed"
    finally:
        transformer.train(was_training)
        for param in transformer.parameters():
            param.grad = None


def test_one_lock_per_model(transformer, flat_mlp):
    from ehrexplain.methods._base import model_lock

    assert model_lock(transformer) is model_lock(transformer)
    assert model_lock(transformer) is not model_lock(flat_mlp)
