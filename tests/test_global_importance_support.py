"""The global ranking reports support, drops rare codes on request, shrinks them, and refuses NaN scores."""

import io
import warnings

import numpy as np
import pandas as pd
import pytest

from ehrexplain.cohort.global_importance import global_importance


def _rows():
    """60 samples score "common" about 1; one sample each scores "rare" 4 and "rare2" -3 (noise can do that)."""
    rng = np.random.default_rng(0)
    rows = [(s, "f", "common", rng.normal(1.0, 1.0)) for s in range(60)] + [(0, "f", "rare", 4.0), (1, "f", "rare2", -3.0)]
    frame = pd.DataFrame(rows, columns=["sample", "feature", "code", "score"])
    frame["patient_id"] = frame["sample"] // 2  # two samples per patient
    return frame


def test_shrinkage_keeps_single_sample_codes_off_the_top():
    rows = _rows()
    raw = global_importance(rows, prior_samples=0, n_bootstrap=50)
    assert raw["code"].tolist() == ["rare", "rare2", "common"]  # what the raw mean does
    table = global_importance(rows, n_bootstrap=50).set_index("code")
    assert table["rank"].to_dict() == {"common": 1, "rare": 2, "rare2": 3}
    n, mean = table.loc["common", ["n_samples", "mean_abs_score"]]
    assert table.loc["common", "shrunk_score"] == pytest.approx(mean * n / (n + 5))
    assert table.loc["rare", "shrunk_score"] == pytest.approx(4.0 / 6)
    assert "shrunk toward 0" in table.attrs["ranking"] and "not" not in table.attrs["ranking"]
    assert "not shrunk" in raw.attrs["ranking"]


def test_support_and_min_samples():
    table = global_importance(_rows(), n_bootstrap=50, min_samples=2)
    assert table[["code", "n_samples", "n_patients"]].values.tolist() == [["common", 60, 30]]
    assert table.attrs["n_codes_below_min_samples"] == 2 and "at least 2 samples" in table.attrs["ranking"]
    full = global_importance(_rows(), n_bootstrap=50).set_index("code")
    assert full.loc[["rare", "rare2"], ["ci_low", "ci_high"]].isna().all().all()  # one value: no interval
    assert full.loc["common", "ci_low"] < full.loc["common", "mean_abs_score"] < full.loc["common", "ci_high"]


def test_nan_scores_are_refused_by_name():
    rows = pd.DataFrame({"sample": [0, 1], "feature": "drugs", "code": ["A", "A"], "score": [np.nan, 0.5]})
    with pytest.raises(ValueError, match=r"1 attribution score\(s\) are NaN, e.g. drugs 'A' \(sample 0\)"):
        global_importance(rows)


@pytest.mark.parametrize("option", [{"min_samples": 0}, {"min_samples": 1.5}, {"prior_samples": -1},
                                    {"prior_samples": float("nan")}, {"prior_samples": "5"}])
def test_bad_options_name_themselves(option):
    with pytest.raises(ValueError, match=next(iter(option))):
        global_importance(_rows(), **option)


def test_plot_shows_support_and_no_interval_for_single_samples():
    from ehrexplain.viz.cohort_plots import plot_global_importance

    table = global_importance(_rows(), n_bootstrap=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_global_importance(table)
        fig.savefig(io.BytesIO(), format="png")  # lays the figure out: no layout warning
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["n = 60", "n = 1", "n = 1"]
    assert len(ax.containers[-1].lines[2][0].get_segments()) == 1  # only "common" has an interval
    assert "shrunk toward 0" in ax.get_title()
