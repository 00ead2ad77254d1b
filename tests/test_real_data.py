"""Real patients: the shipped eICU and MIMIC-III demos through PyHealth's own loaders and tasks, and every
method's properties, the explorer and the cohort tools on them. One processed dataset per module, tiny
models trained one epoch."""

import hashlib
import logging

import pytest
import torch

from ehrexplain.methods import METHODS
from ehrexplain.data import as_source, eicu_code_names, eicu_demo, mimic3_code_names, mimic3_demo

KEYS = ("conditions", "procedures", "drugs")


def _tiny_transformer(samples, seed=0):
    from pyhealth.models import Transformer

    from ehrexplain.data.training import train_model

    torch.manual_seed(seed)
    model = Transformer(dataset=samples, embedding_dim=16, heads=2, num_layers=1, max_seq_len=2048)  # records reach 1065 codes
    return train_model(model, samples, epochs=1, batch_size=64, seed=seed)


@pytest.fixture(scope="module")
def eicu(tmp_path_factory):
    from pyhealth.datasets import eICUDataset, split_by_patient
    from pyhealth.tasks import MortalityPredictionEICU

    logging.getLogger("pyhealth").setLevel(logging.WARNING)
    before = sorted(p.name for p in eicu_demo().iterdir())
    base = eICUDataset(root=str(eicu_demo()), tables=["diagnosis", "medication", "physicalExam"],
                       cache_dir=str(tmp_path_factory.mktemp("eicu_cache")))
    samples = base.set_task(MortalityPredictionEICU())
    train, _, test = split_by_patient(samples, [0.7, 0.1, 0.2], seed=0)
    assert sorted(p.name for p in eicu_demo().iterdir()) == before  # PyHealth wrote nothing into the package
    return base, samples, test, _tiny_transformer(train)


@pytest.fixture(scope="module")
def long_batch(eicu):
    """The four longest test samples (real lengths: hundreds of exam tokens) and one short one."""
    _, _, test, _ = eicu
    lengths = [sum(len(test[i][k]) for k in KEYS) for i in range(len(test))]
    order = sorted(range(len(test)), key=lambda i: -lengths[i])
    return as_source(test).batch(order[:4] + order[-1:])


@pytest.mark.parametrize("root, sums", [(eicu_demo, "SHA256SUMS.txt"), (mimic3_demo, "SHA256SUMS.txt")])
def test_shipped_files_match_their_checksums_and_carry_the_licence(root, sums):
    folder = root()
    listed = dict(line.split()[::-1] for line in (folder / sums).read_text().splitlines())
    assert {n for n in listed if n.endswith(".csv.gz")} == {p.name for p in folder.glob("*.csv.gz")}
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert "Open Database License" in (folder / "LICENSE.txt").read_text()
    notice = (folder / "NOTICE.md").read_text()
    assert "10.13026/" in notice and "Goldberger" in notice


def test_eicu_loader_and_task_give_real_samples(eicu):
    _, samples, test, _ = eicu
    labels = [int(samples[i]["mortality"]) for i in range(len(samples))]
    assert len(samples) > 300 and 0 < sum(labels) < len(labels) / 2  # a few deaths among many survivors
    assert max(len(samples[i]["procedures"]) for i in range(len(samples))) > 200  # real records are long


def test_code_names_come_from_the_data():
    names = eicu_code_names()
    assert names["401.9, I10"].endswith("hypertension")
    assert mimic3_code_names()  # NDC -> drug name from PRESCRIPTIONS
    assert all(" › " in names[c] for c in ("401.9, I10",))


def test_every_method_keeps_its_properties_on_long_real_records(eicu, long_batch):
    from ehrexplain import AttentionRollout, CheferRelevance, DeepLift, IntegratedGradients

    model, batch = eicu[3], long_batch
    rollout = AttentionRollout(model).attribute(**batch)
    for key in KEYS:
        torch.testing.assert_close(rollout[key].sum(-1), torch.ones(len(batch["mortality"])))  # a distribution
    deltas = []
    for steps in (2, 8, 32):
        _, delta = IntegratedGradients(model, steps=steps, alpha_rule="gauss_legendre").attribute(
            **batch, return_convergence_delta=True)
        deltas.append(delta.abs().max().item())
    assert deltas[0] > deltas[1] > deltas[2], f"IG |delta| by steps 2, 8, 32: {deltas}"
    lift, lift_delta = DeepLift(model).attribute(**batch, return_convergence_delta=True)
    gap = sum(lift[k].sum(-1) for k in KEYS) - lift_delta  # f(x) - f(b)
    assert (lift_delta.abs() <= 1e-4 * gap.abs().clamp_min(1e-2)).all(), f"DeepLIFT relative delta {lift_delta / gap}"
    chefer = CheferRelevance(model).attribute(**batch)
    for name, scores in {"rollout": rollout, "chefer": chefer, "deeplift": lift}.items():
        for key in KEYS:
            padding = batch[key] == 0
            assert padding.any() and torch.equal(scores[key][padding], torch.zeros_like(scores[key][padding])), name


@pytest.mark.parametrize("method", ["rollout", "chefer", "integrated_gradients", "deeplift"])
def test_batch_equals_per_sample_on_real_records(eicu, long_batch, method):
    from ehrexplain.methods import make_interpreter

    options = {"steps": 8} if method == "integrated_gradients" else {}
    explain = make_interpreter(method, eicu[3])
    together = explain.attribute(**long_batch, **options)
    for i in (0, 4):  # the longest and the shortest record
        alone = explain.attribute(**{k: v[i : i + 1] for k, v in long_batch.items()}, **options)
        for key in KEYS:
            n = alone[key].shape[1]
            torch.testing.assert_close(together[key][i : i + 1, :n], alone[key], atol=1e-5, rtol=1e-4)


def test_explorer_and_dashboard_on_a_real_sample_dataset(eicu):
    from ehrexplain.data import PatientSource
    from ehrexplain.viz.widgets import ComparisonDashboard, ExplanationExplorer

    _, _, test, model = eicu
    explorer = ExplanationExplorer(model, test)
    assert explorer.explanation is not None and explorer.image.value, explorer.message.value
    n_codes = sum(len(test[0][k]) for k in KEYS)
    assert len(explorer.explanation.labels) == n_codes
    named = ExplanationExplorer(model, PatientSource(test, code_names=eicu_code_names()))
    named.method.value = "integrated_gradients"
    assert named.explanation.delta is not None
    assert any(label.startswith("conditions: ") and " › " in label for label in named.explanation.labels)
    dashboard = ComparisonDashboard(model, test)
    assert set(dashboard.explanations) == set(METHODS)  # every registered method supports a Transformer


def test_sources_pyhealth_gives_and_clear_errors_for_the_rest(eicu):
    from pyhealth.datasets import get_dataloader
    from pyhealth.tasks import MortalityPredictionEICU

    from ehrexplain.evaluation import explain_patient
    from ehrexplain.viz.widgets import ExplanationExplorer

    base, samples, test, model = eicu
    from_loader = explain_patient(model, get_dataloader(test, batch_size=8, shuffle=False), 2, "deeplift")
    assert from_loader.scores.tolist() == explain_patient(model, test, 2, "deeplift").scores.tolist()
    assert len(as_source(base, task=MortalityPredictionEICU())) == len(samples)
    with pytest.raises(TypeError, match="base dataset: pass task="):
        explain_patient(model, base, 0, "rollout")
    with pytest.raises(ValueError, match="shuffle=False"):
        explain_patient(model, get_dataloader(test, batch_size=8, shuffle=True), 0, "rollout")
    with pytest.raises(TypeError, match=r"data must be a PyHealth SampleDataset .*; got dict"):
        ExplanationExplorer(model, {"conditions": []})


def test_compare_takes_a_sample_dataset(eicu):
    from ehrexplain.evaluation import compare

    _, _, test, model = eicu
    table = compare(model, test, ["rollout"], max_batches=1, progress=False, n_points=3)
    assert table.index.tolist() == ["rollout"] and "recovery_auroc" not in table.columns  # no ground truth here
    assert table.notna().all().all()


def test_explain_cohort_and_global_importance_on_the_eicu_test_split(eicu, tmp_path):
    from ehrexplain.cohort import explain_cohort, global_importance, read_attributions

    _, _, test, model = eicu
    out = explain_cohort(model, test, "deeplift", out=tmp_path / "attr", batch_size=32, progress=False)
    rows = read_attributions(out)
    n_tokens = sum(len(test[i][k]) for i in range(len(test)) for k in KEYS)
    assert len(rows) == n_tokens and rows["sample"].nunique() == len(test)
    table = global_importance(rows, n_bootstrap=100, min_samples=3)
    assert (table["n_samples"] >= 3).all() and (table["n_patients"] <= table["n_samples"]).all()
    assert table.attrs["n_codes_below_min_samples"] > 0  # real records have many rare codes
    assert (table["shrunk_score"].abs() < table["mean_abs_score"] + 1e-12).all()


def test_mimic3_demo_runs_the_same_pipeline(tmp_path):
    from pyhealth.datasets import MIMIC3Dataset
    from pyhealth.tasks import MortalityPredictionMIMIC3

    from ehrexplain import IntegratedGradients
    from ehrexplain.viz.widgets import ExplanationExplorer

    logging.getLogger("pyhealth").setLevel(logging.WARNING)
    with pytest.warns(UserWarning, match="only have date timestamp"):  # PyHealth's own note on PRESCRIPTIONS
        base = MIMIC3Dataset(root=str(mimic3_demo()), tables=["diagnoses_icd", "procedures_icd", "prescriptions"],
                             cache_dir=str(tmp_path))
    samples = base.set_task(MortalityPredictionMIMIC3())
    assert len(samples) > 5
    model = _tiny_transformer(samples)
    batch = as_source(samples).batch(range(len(samples)))
    deltas = [IntegratedGradients(model, steps=s, alpha_rule="gauss_legendre").attribute(
        **batch, return_convergence_delta=True)[1].abs().max().item() for s in (2, 32)]
    assert deltas[1] < deltas[0]
    explorer = ExplanationExplorer(model, as_source(samples, code_names=mimic3_code_names()))
    assert explorer.explanation is not None, explorer.message.value


def test_explorer_pages_and_searches_a_long_record_without_clipping(eicu):
    import warnings

    from ehrexplain.data import PatientSource
    from ehrexplain.viz.widgets import PAGE_SIZE, ExplanationExplorer

    _, _, test, model = eicu
    longest = max(range(len(test)), key=lambda i: sum(len(test[i][k]) for k in KEYS))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no layout warning
        explorer = ExplanationExplorer(model, PatientSource(test, code_names=eicu_code_names()), index=longest)
        explanation = explorer.explanation
        n = len(explanation.labels)
        assert n > 4 * PAGE_SIZE and explorer.page.max == -(-n // PAGE_SIZE)
        top = sorted(range(n), key=lambda i: -abs(explanation.scores[i]))[:PAGE_SIZE]
        assert explorer.shown == top and f"codes 1–{PAGE_SIZE} of {n}" in explorer.page_info.value
        width, height = explorer.figure.get_size_inches()
        assert width == 8 and height < 16  # 25 codes, not hundreds of inches
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(explorer.figure).draw()  # lays it out as the PNG was
        renderer = explorer.figure.canvas.get_renderer()
        box = explorer.figure.bbox
        for label in explorer.figure.axes[0].get_yticklabels():  # long names wrapped, none cut off
            extent = label.get_window_extent(renderer)
            assert extent.x0 >= box.x0 - 1 and extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1, label.get_text()
        explorer.page.value = explorer.page.max
        assert explorer.shown == sorted(range(n), key=lambda i: -abs(explanation.scores[i]))[(explorer.page.max - 1) * PAGE_SIZE:]
        explorer.search.value = "GCS"
        assert explorer.page.value == 1 and explorer.shown
        assert all("gcs" in explanation.labels[i].lower() for i in explorer.shown)
        explorer.search.value = "no such code anywhere"
        assert explorer.shown == [] and "no code" in explorer.page_info.value
