"""Leave-one-code-out occlusion: each score is f(x) - f(x with that code replaced), checked by a plain loop."""

import pytest
import torch

from conftest import single_sample

from ehrexplain.methods import Occlusion, make_interpreter


def _logit(model, batch, target):
    """The target logit of every sample, straight from the model (no ehrexplain code)."""
    with torch.no_grad():
        logits = model(**batch)["logit"]
    return logits[torch.arange(len(logits)), target]


def _loop_reference(model, batch, key, replacement):
    """One model call per (sample, code): replace the code by ``replacement`` and record the drop."""
    ids = batch[key]
    target = torch.zeros(len(ids), dtype=torch.long)  # binary: the one logit
    f_x = _logit(model, batch, target)
    expected = torch.zeros(ids.shape)
    for i in range(ids.shape[0]):
        for j in range(ids.shape[1]):
            if ids[i, j] == 0 or ids[i, j] == replacement:
                continue
            one = {k: (v[i : i + 1].clone() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
            one[key][0, j] = replacement
            expected[i, j] = f_x[i] - _logit(model, one, target[i : i + 1])[0]
    return expected


def test_scores_are_the_logit_drop_of_each_code_checked_by_a_loop(transformer, flat_batch):
    was_training = transformer.training
    transformer.eval()
    scores = Occlusion(transformer).attribute(**flat_batch)
    for key in ("conditions", "procedures"):
        expected = _loop_reference(transformer, flat_batch, key, replacement=1)  # UNK, the default baseline
        torch.testing.assert_close(scores[key], expected, atol=1e-5, rtol=1e-4)
        assert (scores[key][flat_batch[key] == 0] == 0).all()  # padding scores exactly 0
        assert scores[key].abs().sum() > 0
    transformer.train(was_training)


def test_padding_baseline_masks_the_code_out(transformer, flat_batch):
    """With baseline 0 the code becomes padding in place, as if the dataloader had padded it."""
    transformer.eval()
    baseline = {key: torch.zeros_like(flat_batch[key]) for key in ("conditions", "procedures")}
    scores = Occlusion(transformer).attribute(**flat_batch, baseline=baseline)
    for key in ("conditions", "procedures"):
        expected = _loop_reference(transformer, flat_batch, key, replacement=0)
        torch.testing.assert_close(scores[key], expected, atol=1e-5, rtol=1e-4)


def test_batch_equals_each_patient_alone_and_chunks_do_not_matter(stage_attention_net, nested_batch):
    keys = stage_attention_net.feature_keys
    batched = Occlusion(stage_attention_net).attribute(**nested_batch)
    chunked = Occlusion(stage_attention_net).attribute(**nested_batch, internal_batch_size=3)
    torch.testing.assert_close(chunked["visits"], batched["visits"], atol=1e-6, rtol=1e-5)
    for i in range(len(nested_batch["visits"])):
        alone = Occlusion(stage_attention_net).attribute(**single_sample(nested_batch, i, keys))["visits"][0]
        rows, cols = alone.shape
        torch.testing.assert_close(batched["visits"][i, :rows, :cols], alone, atol=1e-5, rtol=1e-4)
        assert (batched["visits"][i][nested_batch["visits"][i] == 0] == 0).all()


def test_multiclass_target_selects_the_logit(multiclass_transformer, multiclass_batch):
    occlusion = Occlusion(multiclass_transformer)
    per_class = [occlusion.attribute(**multiclass_batch, target_class_idx=c)["conditions"] for c in range(3)]
    assert not torch.allclose(per_class[0], per_class[1])
    with pytest.raises(ValueError, match="target_class_idx 3 is out of range for this 3-class model"):
        occlusion.attribute(**multiclass_batch, target_class_idx=3)


def test_option_schema_refuses_bad_chunks_by_name(transformer, flat_batch):
    with pytest.raises(ValueError, match="internal_batch_size must be a positive integer, got 0"):
        Occlusion(transformer).attribute(**flat_batch, internal_batch_size=0)
    bound = make_interpreter("occlusion", transformer, internal_batch_size=2)  # a call option, bound at build
    assert bound.call_defaults == {"internal_batch_size": 2}
    torch.testing.assert_close(bound.attribute(**flat_batch)["conditions"],
                               Occlusion(transformer).attribute(**flat_batch)["conditions"], atol=1e-6, rtol=1e-5)


def test_default_passes_are_bounded_by_tokens(transformer, flat_batch, monkeypatch):
    """Each occluded copy holds a whole padded record: by default a pass takes as many as fit PASS_TOKENS."""
    import ehrexplain.methods._chunking as chunking
    import ehrexplain.methods.occlusion as occlusion

    tokens = flat_batch["conditions"].shape[1] + flat_batch["procedures"].shape[1]
    monkeypatch.setattr(chunking, "PASS_TOKENS", 4 * tokens + 1)
    whole = Occlusion(transformer).attribute(**flat_batch, internal_batch_size=None)
    rows, logits = [], occlusion._logits
    monkeypatch.setattr(occlusion, "_logits", lambda batch, values, r, *rest: rows.append(len(r)) or logits(batch, values, r, *rest))
    default = Occlusion(transformer).attribute(**flat_batch)
    codes = int(sum((flat_batch[key] > 1).sum() for key in ("conditions", "procedures")))  # UNK (1) scores 0 unrun
    assert rows[0] == 8 and max(rows[1:]) == 4 and sum(rows[1:]) == codes  # f(x), then 4 copies a pass
    for key in whole:
        torch.testing.assert_close(default[key], whole[key], atol=1e-6, rtol=0)


@pytest.mark.parametrize("cls", ["LogisticRegression", "RNN", "RETAIN"])
def test_models_that_read_bare_tensors_or_the_label_are_occluded_as_their_forward_runs(cls, flat_dataset, flat_batch):
    """LogisticRegression and RETAIN take a bare tensor (not a 1-tuple), RNN reads the label: all once crashed."""
    import pyhealth.models

    torch.manual_seed(0)
    model = getattr(pyhealth.models, cls)(dataset=flat_dataset, embedding_dim=8).eval()
    batch = {key: value[:3] for key, value in flat_batch.items()}
    scores = Occlusion(model).attribute(**batch)
    torch.testing.assert_close(scores["conditions"], _loop_reference(model, batch, "conditions", 1), atol=1e-5, rtol=1e-4)
