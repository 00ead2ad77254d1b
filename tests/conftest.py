"""Shared fixtures: small PyHealth datasets and trained models, built once per session."""

import json
import os
import random
import warnings
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
# litdata (under PyHealth) otherwise asks PyPI for a newer version at import and warns: no network in tests.
os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
warnings.filterwarnings("ignore", message=".*does not have (time|mask).*")

CODES = [f"C{i:02d}" for i in range(30)]


def _flat_samples(n: int, n_classes: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        conditions = rng.sample(CODES, rng.randint(2, 8))
        risk = ("C01" in conditions) + ("C02" in conditions)
        label = min(risk, n_classes - 1) if n_classes > 2 else int(risk > 0)
        samples.append(
            {
                "patient_id": f"p{i}",
                "visit_id": "v0",
                "conditions": conditions,
                "procedures": rng.sample(CODES, rng.randint(1, 4)),
                "label": label,
            }
        )
    return samples


def _dataset(samples, input_schema, label_kind):
    from pyhealth.datasets import create_sample_dataset

    return create_sample_dataset(
        samples=samples, input_schema=input_schema, output_schema={"label": label_kind}, dataset_name="test"
    )


def _batch(dataset, size):
    from pyhealth.datasets import get_dataloader

    return next(iter(get_dataloader(dataset, batch_size=size, shuffle=False)))


@pytest.fixture(scope="session")
def flat_dataset():
    return _dataset(_flat_samples(96, 2, seed=0), {"conditions": "sequence", "procedures": "sequence"}, "binary")


def _trained_transformer(dataset, seed: int):
    from pyhealth.models import Transformer

    from ehrexplain.data.training import train_model

    torch.manual_seed(seed)
    model = Transformer(dataset=dataset, embedding_dim=32, heads=2, num_layers=2, dropout=0.1)
    return train_model(model, dataset, epochs=3, seed=seed)


@pytest.fixture(scope="session")
def transformer(flat_dataset):
    return _trained_transformer(flat_dataset, seed=0)


@pytest.fixture(scope="session")
def flat_batch(flat_dataset):
    return _batch(flat_dataset, 8)


@pytest.fixture(scope="session")
def multiclass_dataset():
    return _dataset(_flat_samples(96, 3, seed=1), {"conditions": "sequence", "procedures": "sequence"}, "multiclass")


@pytest.fixture(scope="session")
def multiclass_transformer(multiclass_dataset):
    return _trained_transformer(multiclass_dataset, seed=1)


@pytest.fixture(scope="session")
def multiclass_batch(multiclass_dataset):
    return _batch(multiclass_dataset, 8)


@pytest.fixture(scope="session")
def nested_dataset():
    rng = random.Random(2)
    samples = []
    for i in range(48):
        visits = [rng.sample(CODES, rng.randint(1, 4)) for _ in range(rng.randint(1, 5))]
        label = int(any("C01" in visit for visit in visits))
        samples.append({"patient_id": f"p{i}", "visit_id": "v0", "visits": visits, "label": label})
    return _dataset(samples, {"visits": "nested_sequence"}, "binary")


@pytest.fixture(scope="session")
def stage_attention_net(nested_dataset):
    from pyhealth.models import StageAttentionNet

    from ehrexplain.data.training import train_model

    torch.manual_seed(2)
    model = StageAttentionNet(dataset=nested_dataset, embedding_dim=16, chunk_size=8, levels=2)
    return train_model(model, nested_dataset, epochs=2, seed=2)


@pytest.fixture(scope="session")
def nested_batch(nested_dataset):
    return _batch(nested_dataset, 6)


def single_sample(batch: dict, i: int, feature_keys) -> dict:
    """Sample ``i`` of a batch as a batch of one, with trailing padding trimmed.

    Lets tests compare a batched result with the result for one patient alone.
    """
    one = {}
    for key, value in batch.items():
        if key in feature_keys:
            row = value[i : i + 1]
            keep = row.reshape(row.shape[0], row.shape[1], -1).ne(0).any(dim=(0, 2)).nonzero().max().item() + 1
            row = row[:, :keep]
            if row.dim() == 3:
                width = row.ne(0).any(dim=(0, 1)).nonzero().max().item() + 1
                row = row[:, :, :width]
            one[key] = row
        elif isinstance(value, torch.Tensor):
            one[key] = value[i : i + 1]
        else:
            one[key] = value[i : i + 1]
    return one


def assert_restored(model, training_before: bool) -> None:
    """The model has no leftover module hooks and its train/eval flag is as before."""
    assert model.training == training_before
    for name, module in model.named_modules():
        assert not module._forward_hooks, f"forward hook left on {name or 'model'}"
        assert not module._forward_pre_hooks, f"forward pre-hook left on {name or 'model'}"
        assert not module._backward_hooks, f"backward hook left on {name or 'model'}"
    assert not getattr(model, "_attention_hooks_enabled", False)


@pytest.fixture(scope="session")
def flat_mlp(flat_dataset):
    from pyhealth.models import MLP

    from ehrexplain.data.training import train_model

    torch.manual_seed(3)
    return train_model(MLP(dataset=flat_dataset, embedding_dim=16, hidden_dim=16), flat_dataset, epochs=3, seed=3)


@pytest.fixture(scope="session")
def lab_dataset():
    """Codes plus a continuous ``labs`` vector per patient (raw-space attribution)."""
    rng = random.Random(4)
    samples = []
    for i in range(64):
        conditions = rng.sample(CODES, rng.randint(2, 6))
        labs = [rng.gauss(0, 1) for _ in range(4)]
        label = int(labs[0] + ("C01" in conditions) > 0.5)
        samples.append({"patient_id": f"p{i}", "visit_id": "v0", "conditions": conditions, "labs": labs, "label": label})
    return _dataset(samples, {"conditions": "sequence", "labs": "tensor"}, "binary")


@pytest.fixture(scope="session")
def lab_mlp(lab_dataset):
    from pyhealth.models import MLP

    from ehrexplain.data.training import train_model

    torch.manual_seed(4)
    return train_model(MLP(dataset=lab_dataset, embedding_dim=16, hidden_dim=16), lab_dataset, epochs=3, seed=4)


@pytest.fixture(scope="session")
def lab_batch(lab_dataset):
    return _batch(lab_dataset, 8)


@pytest.fixture(scope="session")
def demo_cohort():
    from ehrexplain.data.synthetic import make_cohort

    return make_cohort(n_patients=120, seed=0)


@pytest.fixture(scope="session")
def demo_transformer(demo_cohort):
    from ehrexplain.data.synthetic import train_demo_model

    return train_demo_model(demo_cohort, kind="transformer", seed=0, epochs=5)


@pytest.fixture(scope="session")
def held_out_demo():
    """The notebooks' set-up: 300 patients, Transformer and MLP trained on 70%, 30% held out."""
    from types import SimpleNamespace

    from ehrexplain.data.synthetic import make_cohort, train_demo_model

    cohort = make_cohort(n_patients=300, seed=0)
    train, test = cohort.split(0.3, seed=0)
    models = {kind: train_demo_model(cohort, kind=kind, seed=0, indices=train) for kind in ("transformer", "mlp")}
    return SimpleNamespace(cohort=cohort, train=train, test=test, **models)


@pytest.fixture(scope="session")
def stagenet_and_batch():
    """PyHealth's StageNet on time-stamped codes and labs: (times, values) tuples per feature."""
    from pyhealth.datasets import get_dataloader
    from pyhealth.models import StageNet

    rng = random.Random(5)
    samples = []
    for i in range(24):
        times = [float(t) for t in range(rng.randint(1, 4))]
        visits = [rng.sample(CODES, rng.randint(1, 4)) for _ in times]
        labs = [[rng.gauss(0, 1) for _ in range(3)] for _ in times]
        label = int(any("C01" in visit for visit in visits))
        samples.append({"patient_id": f"p{i}", "visit_id": "v0", "codes": (times, visits), "labs": (times, labs), "label": label})
    dataset = _dataset(samples, {"codes": "stagenet", "labs": "stagenet_tensor"}, "binary")
    torch.manual_seed(5)
    model = StageNet(dataset=dataset, embedding_dim=16, chunk_size=8, levels=2).eval()
    return model, next(iter(get_dataloader(dataset, batch_size=6, shuffle=False)))


def total(scores: dict) -> torch.Tensor:
    """Each sample's attributions summed over keys and positions (written here, independent of the library)."""
    return sum(s.reshape(s.shape[0], -1).sum(dim=1) for s in scores.values())


def padding_kept_baseline(model, batch: dict) -> dict:
    """ehrexplain's default baseline (PyHealth's, with padding left as padding), to compare with PyHealth."""
    from ehrexplain.core.batch import unpack_batch
    from ehrexplain.methods._embedding_space import default_baseline

    return default_baseline(unpack_batch(model, batch), use_embeddings=True)


@pytest.fixture(scope="session")
def lab_transformer(lab_dataset):
    """An (untrained) PyHealth Transformer on codes plus a continuous ``labs`` vector."""
    from pyhealth.models import Transformer

    torch.manual_seed(6)
    return Transformer(dataset=lab_dataset, embedding_dim=16, heads=2, num_layers=1).eval()


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def code_cells(name: str):
    """``(index, source, tags)`` of each code cell of ``notebooks/name``, IPython magics and shell lines dropped."""
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            source = "".join(line for line in cell["source"] if not line.lstrip().startswith(("%", "!")))
            yield index, source, cell.get("metadata", {}).get("tags", [])


@contextmanager
def notebook_run():
    """Run notebook code here: its torch thread count is undone and its figures closed afterwards."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        matplotlib.pyplot.close("all")


def run_until(name: str, error_type: type[BaseException], why: str) -> tuple[int, str, BaseException]:
    """Execute the notebook's code cells in order; return index, source and error of the first cell that raises
    ``error_type``. Cells tagged ``raises-exception`` (the pitfall demos) may raise; reaching the end fails
    the test with ``why`` (what should have stopped the notebook)."""
    namespace: dict = {}
    with notebook_run():
        for index, source, tags in code_cells(name):
            try:
                exec(compile(source, f"{name} cell {index}", "exec"), namespace)
            except error_type as error:
                if "raises-exception" not in tags:
                    return index, source, error
    pytest.fail(f"{name} ran to the end although {why}")


def grad_pass_rows(monkeypatch) -> list[int]:
    """Rows of every model pass that builds a graph (IG's path passes, DeepLIFT's pairs), recorded as they run."""
    from ehrexplain.methods._embedding_space import AttributionSpace

    rows, forward = [], AttributionSpace.forward

    def recorded(self, points, sample_rows):
        if torch.is_grad_enabled():
            rows.append(len(sample_rows))
        return forward(self, points, sample_rows)

    monkeypatch.setattr(AttributionSpace, "forward", recorded)
    return rows
