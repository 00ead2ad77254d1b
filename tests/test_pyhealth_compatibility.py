"""ehrexplain interpreters are accepted where PyHealth takes an interpreter."""

import math

import torch

from ehrexplain import AttentionRollout, CheferRelevance


def test_pyhealth_faithfulness_metrics_accept_ehrexplain_interpreters(transformer, flat_dataset):
    from pyhealth.datasets import get_dataloader
    from pyhealth.interpret.methods import BaseInterpreter
    from pyhealth.metrics.interpretability import evaluate_attribution

    loader = get_dataloader(flat_dataset, batch_size=16, shuffle=False)
    for interpreter in (AttentionRollout(transformer), CheferRelevance(transformer)):
        assert isinstance(interpreter, BaseInterpreter)
        scores = evaluate_attribution(transformer, loader, interpreter, percentages=[10, 50])
        assert set(scores) == {"comprehensiveness", "sufficiency"}
        assert all(math.isfinite(value) for value in scores.values())
    transformer.zero_grad(set_to_none=True)


def test_pyhealth_ensemble_accepts_ehrexplain_interpreters(transformer, flat_batch):
    from pyhealth.interpret.methods import AvgEnsemble

    experts = [AttentionRollout(transformer), AttentionRollout(transformer, head_fusion="max"), CheferRelevance(transformer)]
    consensus = AvgEnsemble(transformer, experts).attribute(**flat_batch)
    assert consensus["conditions"].shape == flat_batch["conditions"].shape
    assert torch.isfinite(consensus["conditions"]).all()
