"""One demo model for the whole notebook series: cached, deterministic, the settings the notebooks quote."""

import pytest
import torch

from ehrexplain.data.demo import EPOCHS, N_PATIENTS, demo
from ehrexplain.data.synthetic import make_cohort, model_auroc, train_demo_model


def test_demo_is_built_once_and_shared():
    first = demo()
    assert demo() is first
    assert demo(kind="mlp").cohort is first.cohort  # one cohort per seed for both models


def test_demo_equals_building_it_by_hand():
    demo.cache_clear()  # an earlier test may have built it under another torch thread count
    d = demo()
    cohort = make_cohort(n_patients=N_PATIENTS, seed=0)
    train, test = cohort.split(0.3, seed=0)
    assert (d.train, d.test) == (train, test)
    by_hand = train_demo_model(cohort, kind="transformer", seed=0, epochs=EPOCHS, indices=train)
    for (name, ours), (_, theirs) in zip(d.model.state_dict().items(), by_hand.state_dict().items()):
        assert torch.equal(ours, theirs), name
    assert model_auroc(d.model, d.cohort, d.test) > 0.75


def test_demo_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="kind must be"):
        demo(kind="rnn")
