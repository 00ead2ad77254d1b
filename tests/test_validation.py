"""Bad input: one documented exception type with a message naming the key, before any forward pass.

Every case is a careless call a user could make; each asserts the exception type
and the words of its message (the feature key or option, what was expected).
"""

import copy

import numpy as np
import pytest
import torch
from conftest import assert_restored

from ehrexplain import AttentionRollout, CheferRelevance, DeepLift, IntegratedGradients
from ehrexplain.core.validation import validate_call

METHODS = {
    "ig": lambda model: IntegratedGradients(model, steps=2),
    "dl": DeepLift,
    "ro": AttentionRollout,
    "ch": CheferRelevance,
}


@pytest.fixture
def setups(transformer, flat_batch, lab_mlp, lab_batch, lab_transformer, stagenet_and_batch):
    stagenet, stage_batch = stagenet_and_batch
    return {
        "flat": (transformer, flat_batch),
        "lab": (lab_mlp, lab_batch),
        "labT": (lab_transformer, lab_batch),
        "stage": (stagenet, stage_batch),
    }


def replaced(batch, **changes):
    return {**batch, **changes}


def conds(b):
    return b["conditions"]


def labs(b):
    return b["labs"]


def codes_tuple(b, value):
    return (b["codes"][0], value)


# (id, method, setup, kwargs built from the batch, exception, words of the message)
CASES = [
    # unknown keywords: refused with "did you mean"
    ("typo return_delta", "ig", "flat", lambda b: replaced(b, return_delta=True), TypeError, "or 'return_convergence_delta'?"),
    ("typo target_class", "ig", "flat", lambda b: replaced(b, target_class=1), TypeError, "did you mean 'target_class_idx'"),
    ("typo step", "ig", "flat", lambda b: replaced(b, step=8), TypeError, "did you mean 'steps'"),
    ("typo feature key", "ro", "flat", lambda b: {**{k: v for k, v in b.items() if k != "conditions"}, "conditons": conds(b)}, TypeError, "did you mean 'conditions'"),
    ("constructor arg to attribute", "ch", "flat", lambda b: replaced(b, head_fusion="max"), TypeError, "unexpected keyword 'head_fusion'"),
    ("IG option on DeepLift", "dl", "flat", lambda b: replaced(b, steps=5), TypeError, "unexpected keyword 'steps'"),
    ("typo on rollout", "ro", "flat", lambda b: replaced(b, target_clas=0), TypeError, "did you mean 'target_class_idx'"),
    # counts: strict integers
    ("steps bool", "ig", "flat", lambda b: replaced(b, steps=True), TypeError, "steps must be a positive integer"),
    ("steps float", "ig", "flat", lambda b: replaced(b, steps=2.0), TypeError, "steps must be a positive integer"),
    ("steps str", "ig", "flat", lambda b: replaced(b, steps="8"), TypeError, "steps must be a positive integer"),
    ("steps zero", "ig", "flat", lambda b: replaced(b, steps=0), ValueError, "steps must be a positive integer"),
    ("steps negative", "ig", "flat", lambda b: replaced(b, steps=np.int64(-3)), ValueError, "steps must be a positive integer"),
    ("chunk zero", "ig", "flat", lambda b: replaced(b, internal_batch_size=0), ValueError, "internal_batch_size must be a positive integer"),
    ("chunk float", "ig", "flat", lambda b: replaced(b, internal_batch_size=2.5), TypeError, "internal_batch_size must be a positive integer"),
    ("chunk bool", "ig", "flat", lambda b: replaced(b, internal_batch_size=False), TypeError, "internal_batch_size must be a positive integer"),
    ("alpha rule", "ig", "flat", lambda b: replaced(b, alpha_rule="simpson"), ValueError, "unknown alpha_rule 'simpson'"),
    # flags
    ("delta flag str", "ig", "flat", lambda b: replaced(b, return_convergence_delta="yes"), TypeError, "return_convergence_delta must be True or False"),
    ("delta flag int", "dl", "flat", lambda b: replaced(b, return_convergence_delta=1), TypeError, "return_convergence_delta must be True or False"),
    ("completeness flag", "dl", "flat", lambda b: replaced(b, enforce_completeness=None), TypeError, "enforce_completeness must be True or False"),
    # targets
    ("target fractional", "ig", "flat", lambda b: replaced(b, target_class_idx=1.7), TypeError, "'target_class_idx' must be an integer"),
    ("target bool", "ig", "flat", lambda b: replaced(b, target_class_idx=True), TypeError, "'target_class_idx' must be an integer"),
    ("target str", "ro", "flat", lambda b: replaced(b, target_class_idx="1"), TypeError, "'target_class_idx' must be an integer"),
    ("target float on chefer", "ch", "flat", lambda b: replaced(b, target_class_idx=2.5), TypeError, "'target_class_idx' must be an integer"),
    ("target float tensor", "dl", "flat", lambda b: replaced(b, target_class_idx=torch.full((8,), 0.5)), TypeError, "integer class indices"),
    ("target bool tensor", "ig", "flat", lambda b: replaced(b, target_class_idx=torch.ones(8, dtype=torch.bool)), TypeError, "integer class indices"),
    ("target wrong count", "ig", "flat", lambda b: replaced(b, target_class_idx=torch.tensor([1, 0, 1])), ValueError, "has 3 entries"),
    ("target too large", "dl", "flat", lambda b: replaced(b, target_class_idx=7), ValueError, "out of range"),
    ("target negative", "ch", "flat", lambda b: replaced(b, target_class_idx=-1), ValueError, "out of range"),
    ("target list", "ig", "flat", lambda b: replaced(b, target_class_idx=[0, 1]), TypeError, "'target_class_idx' must be an integer"),
    # baselines
    ("baseline fractional ids", "ig", "flat", lambda b: replaced(b, baseline={"conditions": torch.full(conds(b).shape, 1.7)}), TypeError, "baseline for 'conditions' holds token ids"),
    ("baseline key typo", "ig", "flat", lambda b: replaced(b, baseline={"conditons": conds(b)}), KeyError, "did you mean 'conditions'"),
    ("baseline id outside vocab", "dl", "flat", lambda b: replaced(b, baseline={"conditions": torch.full_like(conds(b), 999)}), ValueError, "baseline for 'conditions' has token id(s) [999]"),
    ("baseline wrong shape", "ig", "flat", lambda b: replaced(b, baseline={"conditions": torch.ones(8, 1, dtype=torch.long)}), ValueError, "baseline for 'conditions' has shape"),
    ("baseline as list", "ig", "flat", lambda b: replaced(b, baseline={"conditions": [[1]]}), TypeError, "baseline for 'conditions' must be a torch.Tensor"),
    ("baseline not a dict", "ig", "flat", lambda b: replaced(b, baseline=[1, 2]), TypeError, "'baseline' must be a dict"),
    ("baseline labs NaN", "ig", "lab", lambda b: replaced(b, baseline={"labs": torch.full(labs(b).shape, float("nan"))}), ValueError, "baseline for 'labs' contains NaN"),
    ("baseline labs int", "dl", "lab", lambda b: replaced(b, baseline={"labs": torch.zeros(labs(b).shape, dtype=torch.long)}), TypeError, "baseline for 'labs' must be a float tensor"),
    # batch structure
    ("empty batch", "ig", "flat", lambda b: replaced(b, conditions=conds(b)[:0], procedures=b["procedures"][:0], label=b["label"][:0]), ValueError, "the batch is empty"),
    ("empty batch rollout", "ro", "flat", lambda b: replaced(b, conditions=conds(b)[:0], procedures=b["procedures"][:0], label=b["label"][:0]), ValueError, "the batch is empty"),
    ("missing key", "ch", "flat", lambda b: {k: v for k, v in b.items() if k != "procedures"}, KeyError, "missing feature key(s) ['procedures']"),
    ("batch sizes differ", "ig", "flat", lambda b: replaced(b, procedures=b["procedures"][:3]), ValueError, "batch size differs"),
    ("label size differs", "ro", "flat", lambda b: replaced(b, label=b["label"][:2]), ValueError, "batch size differs"),
    # token features
    ("numpy ids", "ig", "flat", lambda b: replaced(b, conditions=conds(b).numpy()), TypeError, "feature 'conditions' must be a torch.Tensor"),
    ("list ids", "dl", "flat", lambda b: replaced(b, conditions=conds(b).tolist()), TypeError, "feature 'conditions' must be a torch.Tensor"),
    ("None feature", "ro", "flat", lambda b: replaced(b, conditions=None), TypeError, "feature 'conditions' must be a torch.Tensor"),
    ("float ids", "ch", "flat", lambda b: replaced(b, conditions=conds(b).float()), TypeError, "'conditions' holds token ids and must be an integer tensor"),
    ("bool ids", "ig", "flat", lambda b: replaced(b, conditions=conds(b) > 0), TypeError, "'conditions' holds token ids and must be an integer tensor"),
    ("1-D ids", "ro", "flat", lambda b: replaced(b, conditions=conds(b)[0]), ValueError, "'conditions' must have 2 dimensions"),
    ("3-D ids", "dl", "flat", lambda b: replaced(b, conditions=conds(b)[:, :, None]), ValueError, "'conditions' must have 2 dimensions"),
    ("id outside vocab", "ch", "flat", lambda b: replaced(b, conditions=conds(b) + 1000), ValueError, "'conditions' has token id(s)"),
    ("negative id", "ig", "flat", lambda b: replaced(b, conditions=-conds(b)), ValueError, "outside the model's vocabulary"),
    ("longer than max_seq_len", "ro", "flat", lambda b: replaced(b, conditions=torch.nn.functional.pad(conds(b), (0, 1100))), ValueError, "positions but Transformer takes at most"),
    ("longer than max_seq_len IG", "ig", "flat", lambda b: replaced(b, conditions=torch.nn.functional.pad(conds(b), (0, 1100))), ValueError, "max_seq_len=1024"),
    ("tuple too long", "ig", "flat", lambda b: replaced(b, conditions=(conds(b), conds(b), conds(b))), ValueError, "'conditions' should be a tuple laid out as ('value',)"),
    ("meta tensor", "ig", "flat", lambda b: replaced(b, conditions=torch.empty(8, 4, dtype=torch.long, device="meta")), ValueError, "'conditions' is on the meta device"),
    # continuous features
    ("labs wrong width", "ig", "lab", lambda b: replaced(b, labs=labs(b)[:, :3]), ValueError, "'labs' must have 4 values per row"),
    ("labs int", "dl", "lab", lambda b: replaced(b, labs=labs(b).long()), TypeError, "'labs' holds continuous values and must be a float tensor"),
    ("labs bfloat16", "ig", "lab", lambda b: replaced(b, labs=labs(b).bfloat16()), TypeError, "'labs' is torch.bfloat16"),
    ("labs NaN", "ig", "lab", lambda b: replaced(b, labs=labs(b).index_fill(1, torch.tensor([0]), float("nan"))), ValueError, "'labs' contains NaN"),
    ("labs inf", "dl", "lab", lambda b: replaced(b, labs=labs(b).index_fill(1, torch.tensor([0]), float("inf"))), ValueError, "'labs' contains NaN or infinite"),
    ("labs NaN rollout", "ro", "labT", lambda b: replaced(b, labs=labs(b).index_fill(1, torch.tensor([1]), float("nan"))), ValueError, "'labs' contains NaN"),
    ("labs inf chefer", "ch", "labT", lambda b: replaced(b, labs=labs(b).index_fill(1, torch.tensor([1]), float("-inf"))), ValueError, "'labs' contains NaN"),
    ("labs 3-D", "ig", "lab", lambda b: replaced(b, labs=labs(b)[:, None]), ValueError, "'labs' must have 2 dimensions"),
    ("labs numpy", "ch", "labT", lambda b: replaced(b, labs=labs(b).numpy()), TypeError, "feature 'labs' must be a torch.Tensor"),
    # time-aware (StageNet) features
    ("stagenet bare tensor", "ig", "stage", lambda b: replaced(b, codes=b["codes"][1]), ValueError, "'codes' should be a tuple laid out as ('time', 'value')"),
    ("stagenet float codes", "dl", "stage", lambda b: replaced(b, codes=codes_tuple(b, b["codes"][1].float())), TypeError, "'codes' holds token ids"),
    ("stagenet NaN time", "ig", "stage", lambda b: replaced(b, labs=(torch.full_like(b["labs"][0], float("nan")), b["labs"][1])), ValueError, "'labs': its 'time' contains NaN"),
    ("stagenet labs width", "dl", "stage", lambda b: replaced(b, labs=(b["labs"][0], b["labs"][1][..., :2])), ValueError, "'labs' must have 3 values per row"),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_clearly(setups, case):
    _, method, setup, make_kwargs, error, words = case
    model, batch = setups[setup]
    training = model.training
    with pytest.raises(error) as info:
        METHODS[method](model).attribute(**make_kwargs(batch))
    assert words in str(info.value), str(info.value)
    assert_restored(model, training)


def test_positional_arguments_refused(transformer, flat_batch):
    with pytest.raises(TypeError, match="takes keyword arguments only"):
        AttentionRollout(transformer).attribute(flat_batch)


def test_enough_cases():
    assert len(CASES) >= 60
    assert {case[1] for case in CASES} == set(METHODS)


def test_model_on_meta_device_or_in_bfloat16(transformer, flat_batch):
    with torch.device("meta"):
        meta = copy.deepcopy(transformer).to("meta")
    with pytest.raises(ValueError, match="meta device"):
        IntegratedGradients(meta).attribute(**flat_batch)
    with pytest.raises(TypeError, match="bfloat16 parameters"):
        AttentionRollout(copy.deepcopy(transformer).bfloat16()).attribute(**flat_batch)


def test_explain_patient_and_compare_inputs(demo_transformer, demo_cohort):
    from ehrexplain.evaluation.metrics import compare
    from ehrexplain.evaluation.explanation import explain_patient

    for index in ("3", 3.0, True):
        with pytest.raises(TypeError, match="patient index must be an integer"):
            explain_patient(demo_transformer, demo_cohort, index, "rollout")
    with pytest.raises(ValueError, match="methods is empty"):
        compare(demo_transformer, [], methods=[])
    with pytest.raises(TypeError, match="methods must be a list"):
        compare(demo_transformer, [], methods="rollout")


def test_numpy_integers_accepted_and_bools_not(transformer, flat_batch):
    ig = IntegratedGradients(transformer)
    with_numpy = ig.attribute(**flat_batch, steps=np.int64(4), target_class_idx=np.int64(1))
    plain = ig.attribute(**flat_batch, steps=4, target_class_idx=1)
    for key in plain:
        torch.testing.assert_close(with_numpy[key], plain[key], rtol=0, atol=0)


def test_metadata_keys_are_allowed(transformer, flat_batch):
    checked = validate_call(transformer, IntegratedGradients.attribute, {**flat_batch, "record_id": ["r"] * 8}).kwargs
    assert checked["record_id"] == ["r"] * 8 and checked["patient_id"] == flat_batch["patient_id"]


@pytest.mark.parametrize("target", [3, -1, 2])
def test_rollout_refuses_a_class_the_binary_model_lacks(transformer, flat_batch, target):
    """Issue 20: rollout ignores the target but must not accept a class that does not exist."""
    with pytest.raises(ValueError, match=rf"target_class_idx {target} is out of range for this binary \(one logit"):
        AttentionRollout(transformer).attribute(**flat_batch, target_class_idx=target)


@pytest.fixture(scope="module")
def multilabel_model_and_batch():
    from conftest import _batch, _dataset, _flat_samples
    from pyhealth.models import Transformer

    samples = _flat_samples(24, 2, seed=4)
    for sample in samples:
        sample["label"] = [code for code, present in (("a", "C01" in sample["conditions"]),
                                                      ("b", "C02" in sample["conditions"]), ("c", True)) if present]
    dataset = _dataset(samples, {"conditions": "sequence", "procedures": "sequence"}, "multilabel")
    torch.manual_seed(4)
    return Transformer(dataset=dataset, embedding_dim=16, heads=2, num_layers=1).eval(), _batch(dataset, 6)


@pytest.mark.parametrize("make", [lambda m: IntegratedGradients(m, steps=4), DeepLift, CheferRelevance])
def test_multilabel_needs_an_explicit_label(multilabel_model_and_batch, make):
    """Issue 20 item 4: no silent arg-max on a multilabel model; an index selects that label's logit."""
    model, batch = multilabel_model_and_batch
    interpreter = make(model)
    with pytest.raises(ValueError, match=r"multilabel model \(3 labels, each its own logit\).*pass target_class_idx"):
        interpreter.attribute(**batch)
    per_label = [interpreter.attribute(**batch, target_class_idx=label) for label in range(3)]
    per_label = [scores[0] if isinstance(scores, tuple) else scores for scores in per_label]
    assert not torch.allclose(per_label[0]["conditions"], per_label[1]["conditions"])
    with pytest.raises(ValueError, match="out of range for this 3-class model"):
        interpreter.attribute(**batch, target_class_idx=3)


def test_multilabel_deeplift_explains_the_chosen_labels_logit(multilabel_model_and_batch):
    model, batch = multilabel_model_and_batch
    scores, delta = DeepLift(model).attribute(**batch, target_class_idx=2, return_convergence_delta=True)
    baseline = {k: torch.where(batch[k] != 0, torch.ones_like(batch[k]), batch[k]) for k in ("conditions", "procedures")}
    with torch.no_grad():
        gap = model(**batch)["logit"][:, 2] - model(**{**batch, **baseline})["logit"][:, 2]
    total = sum(s.reshape(len(s), -1).sum(1) for s in scores.values())
    torch.testing.assert_close(total, gap, atol=1e-4, rtol=1e-4)  # the scores share out label 2's own logit
    assert delta.abs().max() < 1e-4


@pytest.mark.parametrize("index", [2.7, True, "3"])
def test_explorer_refuses_a_patient_index_like_explain_patient(demo_transformer, demo_cohort, index):
    """Issue 23: IntText turned 2.7 into patient 2 and True into patient 1."""
    from ehrexplain.viz.widgets import ExplanationExplorer

    with pytest.raises(TypeError, match=rf"patient index must be an integer, got {index!r}"):
        ExplanationExplorer(demo_transformer, demo_cohort, index=index)


def test_cohort_with_another_vocabulary_is_refused(demo_transformer, demo_cohort):
    """Issue 23: the labels said E11.9 where the model read M54.5."""
    from ehrexplain.data import make_cohort
    from ehrexplain.evaluation.explanation import explain_patient

    other = make_cohort(n_patients=40, seed=11)
    with pytest.raises(ValueError, match=r"feature 'conditions' of the data has another vocabulary than the model's: "
                                         r"token id \d+ is '[^']+' in the data but '[^']+' for the model"):
        explain_patient(demo_transformer, other, 0, "rollout")
    assert explain_patient(demo_transformer, demo_cohort, 0, "rollout").labels  # its own cohort still works
