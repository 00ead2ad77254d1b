"""Property-based tests: generated batches keep every method's invariants; generated bad input
gets only the documented exception types, naming the feature key."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrexplain import AttentionRollout, CheferRelevance, DeepLift, IntegratedGradients

SETTINGS = settings(
    max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
KEYS = ("conditions", "procedures")
METHODS = {
    "rollout": AttentionRollout,
    "chefer": CheferRelevance,
    "integrated_gradients": lambda m: IntegratedGradients(m, steps=4),
    "deeplift": DeepLift,
}


@st.composite
def flat_batches(draw, vocab: int):
    """Batches of 1-3 patients, each with 1..n codes per key, padded to a random extra length."""
    size = draw(st.integers(1, 3))
    batch = {"patient_id": [f"p{i}" for i in range(size)], "label": torch.zeros(size, 1)}
    for key in KEYS:
        lengths = draw(st.lists(st.integers(1, 6), min_size=size, max_size=size))
        width = max(lengths) + draw(st.integers(0, 3))
        ids = torch.zeros(size, width, dtype=torch.long)
        for row, length in enumerate(lengths):
            ids[row, :length] = torch.tensor(draw(st.lists(st.integers(2, vocab - 1), min_size=length, max_size=length)))
        batch[key] = ids
    return batch


def vocab_of(model):
    return min(model.get_embedding_model().embedding_layers[key].num_embeddings for key in KEYS)


def one_patient(batch, i):
    return {key: value[i : i + 1] for key, value in batch.items()}


@pytest.mark.parametrize("method", METHODS)
def test_generated_batches_keep_invariants(transformer, method):
    explain = METHODS[method](transformer)

    @SETTINGS
    @given(flat_batches(vocab_of(transformer)))
    def check(batch):
        scores = explain.attribute(**batch)
        for key in KEYS:
            score, padding = scores[key], batch[key] == 0
            assert torch.isfinite(score).all()
            assert torch.equal(score[padding], torch.zeros_like(score[padding])), f"{key}: padding scored"
            if method == "rollout":  # one distribution over each key's tokens
                torch.testing.assert_close(score.sum(-1), torch.ones(len(score)))
        for i in {0, len(batch["label"]) - 1}:  # a patient's scores do not depend on the rest of its batch
            alone = explain.attribute(**one_patient(batch, i))
            for key in KEYS:
                torch.testing.assert_close(alone[key][0], scores[key][i], atol=1e-5, rtol=1e-4)

    check()


BAD_VALUES = st.sampled_from(["float", "bool", "numpy", "list", "none", "too_big", "negative", "1d", "3d", "short"])


def spoil(batch, key, how):
    ids = batch[key]
    spoiled = {
        "float": lambda: ids.float() + 0.5,
        "bool": lambda: ids > 0,
        "numpy": lambda: ids.numpy(),
        "list": lambda: ids.tolist(),
        "none": lambda: None,
        "too_big": lambda: ids + 10_000,
        "negative": lambda: ids - 10_000,
        "1d": lambda: ids[0],
        "3d": lambda: ids[..., None],
        "short": lambda: ids[:-1] if len(ids) > 1 else ids[:0],
    }[how]()
    return {**batch, key: spoiled}


@pytest.mark.parametrize("method", METHODS)
def test_generated_bad_input_gets_documented_errors(transformer, method):
    explain = METHODS[method](transformer)

    @SETTINGS
    @given(flat_batches(vocab_of(transformer)), st.sampled_from(KEYS), BAD_VALUES)
    def check(batch, key, how):
        bad = spoil(batch, key, how)
        with pytest.raises((TypeError, ValueError, KeyError)) as info:
            explain.attribute(**bad)
        message = str(info.value)
        assert repr(key) in message or (how == "short" and ("batch size differs" in message or "empty" in message)), message

    check()
