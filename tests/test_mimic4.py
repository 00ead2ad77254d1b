"""write_mimic4 through PyHealth's own MIMIC-IV loader and task, then planted-code recovery."""

import logging
import os

import numpy as np
import pandas as pd
import pytest
import torch

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")

from ehrexplain.data import write_mimic4  # noqa: E402


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from pyhealth.datasets import MIMIC4EHRDataset
    from pyhealth.tasks import MortalityPredictionMIMIC4

    logging.getLogger("pyhealth").setLevel(logging.WARNING)
    root = tmp_path_factory.mktemp("mimic")
    truth = write_mimic4(root, n_patients=400, seed=0)
    dataset = MIMIC4EHRDataset(root=str(root), tables=["diagnoses_icd", "procedures_icd", "prescriptions"],
                               cache_dir=str(tmp_path_factory.mktemp("cache")))
    return truth, dataset.set_task(MortalityPredictionMIMIC4())


def test_round_trip_gives_every_planted_label(pipeline):
    from pyhealth.datasets import get_dataloader

    truth, samples = pipeline
    got = {}
    for batch in get_dataloader(samples, batch_size=128):
        got.update({str(v): int(y) for v, y in zip(batch["visit_id"], batch["mortality"].flatten().tolist())})
    assert got == truth.labels
    assert abs(truth.label_rate - truth.rule.prevalence) < 0.06


def test_ground_truth_marks_exactly_the_drivers(pipeline):
    from pyhealth.datasets import get_dataloader

    truth, samples = pipeline
    batch = next(iter(get_dataloader(samples, batch_size=64)))
    marked = truth.ground_truth(batch, samples)
    inverse = {k: {i: c for c, i in p.code_vocab.items()} for k, p in samples.input_processors.items()}
    for row in range(64):
        codes = {inverse[k][int(i)] for k in inverse for i in batch[k][row] if int(i) != 0}
        flagged = {inverse[k][int(i)] for k in inverse for i in batch[k][row][marked[k][row].bool()]}
        assert flagged == truth.rule.drivers(codes)


def test_planted_codes_lead_the_ig_ranking(pipeline, tmp_path):
    """The planted codes lead the cohort's IG ranking by *signed* mean score, over three training seeds.

    IG integrates from an all-padding (UNK) baseline, so common background codes the model
    learnt as "not risky" get large *negative* attributions; the signed mean ranks evidence
    *for* the positive class, which is what the planted codes provide.

    One model is not enough: PyHealth's MIMIC-IV loader numbers the vocabulary in a
    different order from run to run (ties in its parallel event sort), which changes the
    embedding each code starts from like another seed would, and on this 400-patient cohort
    (52 codes) about one such draw in five ranks a risk code 11th. So the ranking is each
    code's signed mean averaged over models trained with seeds 0, 1 and 2, as a researcher
    checking seed stability would read it. Single-seed sweeps (seeds 0-5, one run): first
    code planted at every seed, worst risk code 6th, ranking AUROC 0.966-1.000.
    """
    from pyhealth.datasets import get_dataloader
    from pyhealth.models import Transformer
    from pyhealth.trainer import Trainer

    from ehrexplain.cohort.explain import explain_cohort
    from ehrexplain.cohort.global_importance import global_importance
    from ehrexplain.data.synthetic import auroc

    truth, samples = pipeline
    tables = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        model = Transformer(dataset=samples, embedding_dim=32, heads=2, num_layers=2)
        Trainer(model=model, enable_logging=False).train(
            train_dataloader=get_dataloader(samples, batch_size=32, shuffle=True, seed=seed), epochs=6,
            optimizer_params={"lr": 3e-3}, load_best_model_at_last=False)
        out = explain_cohort(model.eval(), samples, "integrated_gradients", out=tmp_path / str(seed), batch_size=64,
                             progress=False)
        tables.append(global_importance(out, rank_by="mean_score", n_bootstrap=1))
    mean_score = pd.concat(tables).groupby("code")["mean_score"].mean().sort_values(ascending=False)
    ranking = list(mean_score.index)
    planted = {*truth.rule.risk_codes, *truth.rule.interaction}
    assert ranking[0] in planted, mean_score.head(8)
    assert max(ranking.index(code) + 1 for code in truth.rule.risk_codes) <= 8, mean_score.head(10)
    assert auroc([code in planted for code in ranking], -np.arange(len(ranking))) >= 0.9, mean_score.head(10)


@pytest.mark.parametrize("kwargs, match", [(dict(n_patients=0), "n_patients"), (dict(n_patients=2.5), "n_patients"),
                                           (dict(max_admissions=1), "max_admissions")])
def test_bad_input_is_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_mimic4(tmp_path, **({"n_patients": 5} | kwargs))
