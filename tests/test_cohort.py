"""explain_cohort: Parquet parts, resumption, Dask workers; global importance and its stability."""

import functools
import os
import pickle
from collections import Counter

import pandas as pd
import pytest
import torch

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # inherited by the Dask worker processes

from ehrexplain.cohort.explain import explain_cohort, read_attributions  # noqa: E402
from ehrexplain.cohort.global_importance import global_importance, ranking_stability  # noqa: E402

IG_OPTIONS = {"steps": 16}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, like each worker: float sums depend on the thread count,
    so in-process and worker results are bit-identical only at equal counts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client():
    from ehrexplain.cohort.cluster import local_client

    with local_client(n_workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def demo_run():
    from ehrexplain.data.demo import demo

    return demo()


@pytest.fixture(scope="module")
def ig_reference(demo_run, tmp_path_factory):
    """IG over the whole demo cohort, in-process and uninterrupted."""
    out = tmp_path_factory.mktemp("ig") / "attr"
    explain_cohort(demo_run.model, demo_run.cohort.dataset, "integrated_gradients", out=out, batch_size=64,
                   progress=False, **IG_OPTIONS)
    return read_attributions(out)


def _counting_ig(model, fail_at=None):
    """IntegratedGradients counting its attribute calls; raises on call number ``fail_at``."""
    from ehrexplain.methods import IntegratedGradients

    class CountingIG(IntegratedGradients):
        calls = 0

        @functools.wraps(IntegratedGradients.attribute)  # keeps the options explain_cohort inspects
        def attribute(self, **kwargs):
            type(self).calls += 1
            if type(self).calls == fail_at:
                raise RuntimeError("interrupted")
            return super().attribute(**kwargs)

    return CountingIG(model, **IG_OPTIONS)


def test_dask_workers_give_identical_results_and_leave_the_model_as_found(client, demo_run, ig_reference, tmp_path):
    model = demo_run.model
    dataset, weights = model.dataset, {k: v.clone() for k, v in model.state_dict().items()}
    first_parts = demo_run.cohort.dataset.subset(range(128))  # the reference's first two parts, to save time
    out = explain_cohort(model, first_parts, "integrated_gradients", out=tmp_path / "a", batch_size=64,
                         client=client, progress=False, **IG_OPTIONS)
    expected = ig_reference[ig_reference["sample"] < 128]
    pd.testing.assert_frame_equal(read_attributions(out), expected, check_exact=True)
    assert model.dataset is dataset
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_workers_run_without_malloc_trim_and_get_a_light_model(client, demo_run):
    from ehrexplain.cohort.cluster import DatasetStub, _configure_worker, shippable
    from ehrexplain.methods import IntegratedGradients

    assert all(env["MALLOC_TRIM_THRESHOLD_"] is None for env in client.run(_configure_worker).values())
    interpreter = IntegratedGradients(demo_run.model)
    light = shippable(interpreter)
    assert isinstance(light.model.dataset, DatasetStub) and demo_run.model.dataset is demo_run.cohort.dataset
    assert light.model.dataset.input_processors is not demo_run.model.dataset.input_processors  # a copy
    assert not hasattr(light.model.dataset, "_data")  # no samples travel
    assert pickle.loads(pickle.dumps(light)).model.dataset.input_schema == demo_run.cohort.dataset.input_schema


def test_resumed_run_matches_and_skips_written_parts(demo_run, ig_reference, tmp_path):
    model, dataset, out = demo_run.model, demo_run.cohort.dataset, tmp_path / "attr"
    n_parts, k = -(-len(dataset) // 64), 3
    with pytest.raises(RuntimeError, match="interrupted"):
        explain_cohort(model, dataset, _counting_ig(model, fail_at=k + 1), out=out, batch_size=64, progress=False)
    assert len(list(out.glob("part-*.parquet"))) == k and not list(out.glob("*.tmp*"))
    resumed = _counting_ig(model)
    explain_cohort(model, dataset, resumed, out=out, batch_size=64, progress=False)
    assert type(resumed).calls == n_parts - k
    pd.testing.assert_frame_equal(read_attributions(out), ig_reference, check_exact=True)
    (out / "part-000001.parquet").unlink()
    again = _counting_ig(model)
    explain_cohort(model, dataset, again, out=out, batch_size=64, progress=False)
    assert type(again).calls == 1
    pd.testing.assert_frame_equal(read_attributions(out), ig_reference, check_exact=True)


def test_rerun_with_other_settings_refuses(demo_run, tmp_path):
    model, data = demo_run.model, demo_run.cohort.dataset.subset(range(20))
    explain_cohort(model, data, "rollout", out=tmp_path, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        explain_cohort(model, data, "rollout", out=tmp_path, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="method"):
        explain_cohort(model, data, "chefer", out=tmp_path, batch_size=8, progress=False)


def test_every_code_is_written_once_and_padding_never(demo_run, ig_reference):
    cohort = demo_run.cohort
    assert ig_reference["sample"].nunique() == len(cohort.samples)
    for sample, rows in ig_reference.groupby("sample"):
        for key in cohort.feature_keys:
            written = rows.loc[rows["feature"] == key].sort_values("position")
            assert written["code"].tolist() == cohort.samples[sample][key]
            assert written["position"].tolist() == list(range(len(cohort.samples[sample][key])))
    assert ig_reference.groupby("sample")["patient_id"].first().tolist() == [s["patient_id"] for s in cohort.samples]


def test_nested_visits_keep_visit_and_code_positions(stage_attention_net, nested_dataset, tmp_path):
    from pyhealth.datasets import get_dataloader

    loader = get_dataloader(nested_dataset, batch_size=8, shuffle=False)
    table = read_attributions(explain_cohort(stage_attention_net, loader, "deeplift", out=tmp_path, progress=False))
    vocab = {i: c for c, i in nested_dataset.input_processors["visits"].code_vocab.items()}
    for sample in (0, 5, 47):
        rows = table[table["sample"] == sample]
        visits = [[vocab[int(i)] for i in visit if int(i) != 0] for visit in nested_dataset[sample]["visits"]]
        visits = [visit for visit in visits if visit]
        assert [rows.loc[rows.position == v].sort_values("inner_position").code.tolist() for v in range(len(visits))] == visits
        assert len(rows) == sum(map(len, visits)) and rows["delta"].nunique() == 1


def test_planted_codes_lead_the_ig_ranking(demo_run, ig_reference):
    rule = demo_run.cohort.rule
    table = global_importance(ig_reference, rank_by="mean_score")
    assert set(table["code"].head(len(rule.risk_codes))) == set(rule.risk_codes)
    assert table["code"].iloc[-1] == rule.protective_code


def test_global_importance_by_hand_and_seeded_intervals():
    rows = pd.DataFrame({"sample": [0, 0, 1, 2, 2], "feature": "drugs", "code": ["a", "a", "a", "b", "c"],
                         "score": [1.0, 2.0, -1.0, 0.5, -4.0]})
    table = global_importance(rows, n_bootstrap=200, prior_samples=0).set_index("code")  # raw means
    # a: per-sample sums 3 and -1 -> mean 1, mean |.| 2; b: 0.5; c: -4 (|4| ranks first)
    assert table.loc["a", ["n_samples", "mean_score", "mean_abs_score", "rank"]].tolist() == [2, 1.0, 2.0, 2]
    assert table.loc["c", "rank"] == 1 and table.loc["b", "rank"] == 3
    assert table.loc["a", "ci_low"] == 1.0 and table.loc["a", "ci_high"] == 3.0  # resamples of {3, 1}
    again = global_importance(rows, n_bootstrap=200, seed=0)
    pd.testing.assert_frame_equal(global_importance(rows, n_bootstrap=200), again)


def test_bootstrap_interval_covers_the_mean(ig_reference):
    table = global_importance(ig_reference, n_bootstrap=200)
    assert ((table["ci_low"] <= table["mean_abs_score"]) & (table["mean_abs_score"] <= table["ci_high"])).all()
    assert (table["ci_high"] > table["ci_low"])[table["n_samples"] > 5].all()


def test_ranking_stability_spearman():
    def table(scores):
        return global_importance(pd.DataFrame({"sample": 0, "feature": "f", "code": list("abcd"), "score": scores}))

    result = ranking_stability({1: table([4.0, 3, 2, 1]), 2: table([4.0, 3, 2, 1]), 3: table([1.0, 2, 3, 4])})
    assert result.correlations.loc[1, 2] == 1.0 and result.correlations.loc[1, 3] == -1.0
    assert result.minimum == -1.0 and result.mean == pytest.approx(-1 / 3) and result.n_codes == 4


def test_plot_global_importance_labels_and_error_bars(ig_reference):
    from ehrexplain.viz.cohort_plots import plot_global_importance

    table = global_importance(ig_reference, n_bootstrap=50)
    fig = plot_global_importance(table, top_k=5, names={table["code"][0]: "readable"})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == f"{table['code'][0]} — readable"
    assert len(ax.get_yticklabels()) == 5 and ax.get_xlabel() and ax.get_title()
    assert len(ax.containers[-1].lines[2][0].get_segments()) == 5  # one interval per bar


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"method": "gradcam"}, ValueError, "unknown method"),
        ({"method": 3}, TypeError, "method must be"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": True}, ValueError, "batch_size"),
        ({"out": 5}, TypeError, "out must be"),
        ({"data": [1, 2]}, TypeError, "data must be"),
        ({"steps_typo": 3}, TypeError, "steps_typo"),
    ],
)
def test_bad_inputs_are_named(demo_run, tmp_path, kwargs, error, match):
    arguments = {"model": demo_run.model, "data": demo_run.cohort.dataset, "method": "integrated_gradients", "out": tmp_path / "x"}
    options = {k: v for k, v in kwargs.items() if k not in arguments and k != "batch_size"}
    arguments.update({k: v for k, v in kwargs.items() if k in arguments})
    with pytest.raises(error, match=match):
        explain_cohort(**arguments, batch_size=kwargs.get("batch_size", 8), progress=False, **options)
    assert not (tmp_path / "x").exists()


def test_loaders_that_change_the_parts_are_refused(demo_run, tmp_path):
    with pytest.raises(ValueError, match="shuffl"):
        explain_cohort(demo_run.model, demo_run.cohort.loader(8, shuffle=True), "rollout", out=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="batch_size=4 but the DataLoader has batch_size=8"):
        explain_cohort(demo_run.model, demo_run.cohort.loader(8), "rollout", out=tmp_path / "x", batch_size=4, progress=False)
    assert not (tmp_path / "x").exists()
