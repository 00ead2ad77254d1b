"""The randomisation check's random copy never equals the model's own initial weights."""

import pytest
import torch

from ehrexplain.evaluation.metrics import _randomized_copy, randomization_check, randomization_generator_seed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_copy_differs_from_the_weights_a_user_seed_gives(flat_dataset, seed):
    from pyhealth.models import Transformer

    torch.manual_seed(seed)  # as PyHealth's examples do before building a model
    model = Transformer(dataset=flat_dataset, embedding_dim=16, heads=1, num_layers=1)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    state = torch.random.get_rng_state()
    clone, _ = _randomized_copy(model, seed)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is left as it was
    torch.manual_seed(seed + 100)
    other = dict(Transformer(dataset=flat_dataset, embedding_dim=16, heads=1, num_layers=1).named_parameters())
    random_weights = [n for n, p in initial.items() if not torch.equal(p, other[n])]  # LayerNorm's ones/zeros are not
    redrawn = [n for n, p in clone.named_parameters() if not torch.equal(p, initial[n])]
    assert len(random_weights) > len(initial) // 2
    assert redrawn == random_weights, f"seed {seed}: parameters equal to the model's initial draw"


def test_result_records_both_seeds(transformer, flat_batch):
    result = randomization_check(transformer, "rollout", flat_batch, seed=3)
    assert (result.seed, result.generator_seed) == (3, randomization_generator_seed(3))
    assert len({randomization_generator_seed(s) for s in range(1000)} | set(range(1000))) == 2000


def test_public_copy_is_the_one_the_check_explains(transformer, flat_batch):
    from ehrexplain.evaluation import randomized_copy, rank_correlation
    from ehrexplain.methods import make_interpreter

    result = randomization_check(transformer, "rollout", flat_batch, seed=5)
    trained = make_interpreter("rollout", transformer).attribute(**flat_batch)
    random = make_interpreter("rollout", randomized_copy(transformer, seed=5)).attribute(**flat_batch)
    masks = {key: (flat_batch[key] != 0).long() for key in trained}
    rho = rank_correlation(trained, random, masks)
    assert torch.allclose(rho, result.per_sample, equal_nan=True)
    other = make_interpreter("rollout", randomized_copy(transformer, seed=6)).attribute(**flat_batch)
    assert not torch.allclose(rank_correlation(trained, other, masks), result.per_sample, equal_nan=True)
