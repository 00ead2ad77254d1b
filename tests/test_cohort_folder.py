"""The explain_cohort folder: one writer at a time, parts that prove themselves, a Parquet dataset every reader opens."""

import itertools
import json
import multiprocessing
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ehrexplain.cohort.explain import explain_cohort, read_attributions
from ehrexplain.cohort.folder import MANIFEST, read_manifest

N_SAMPLES, BATCH = 10, 4  # three parts: 4, 4 and 2 samples
N_PARTS = -(-N_SAMPLES // BATCH)
#: Race trials per run of the test; raise it (e.g. EHREXPLAIN_RACE_TRIALS=200) to measure.
RACE_TRIALS = int(os.environ.get("EHREXPLAIN_RACE_TRIALS", "12"))


@pytest.fixture(scope="module")
def tiny(flat_dataset):
    """A small untrained Transformer (one thread, as the racing processes use) and ten samples."""
    from pyhealth.models import Transformer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Transformer(dataset=flat_dataset, embedding_dim=8, heads=1, num_layers=1).eval()
    yield model, flat_dataset.subset(range(N_SAMPLES))
    torch.set_num_threads(threads)


def run(tiny, out, steps=4, **kwargs):
    model, data = tiny
    return explain_cohort(model, data, "integrated_gradients", out=out, batch_size=BATCH, progress=False, steps=steps, **kwargs)


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """Uninterrupted runs' rows, by IG steps."""
    return {steps: read_attributions(run(tiny, tmp_path_factory.mktemp(f"ref{steps}") / "attr", steps)) for steps in (4, 8)}


def files(out: Path) -> list[str]:
    return sorted(path.name for path in out.iterdir())


def assert_complete(out: Path, expected: pd.DataFrame) -> None:
    """The folder holds exactly the parts of a finished run, no temporary file, and reads back as ``expected``."""
    assert files(out) == [MANIFEST] + [f"part-{i:06d}.parquet" for i in range(N_PARTS)]
    pd.testing.assert_frame_equal(read_attributions(out), expected, check_exact=True)


def test_the_folder_opens_with_every_parquet_reader(tiny, reference, tmp_path):
    import dask.dataframe as dd
    import polars as pl
    import pyarrow.dataset as ds

    out = run(tiny, tmp_path / "attr")
    expected = reference[4]

    def same(frame: pd.DataFrame) -> None:
        frame = frame.sort_values(["sample", "feature", "position"], kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(frame, expected.sort_values(["sample", "feature", "position"], kind="stable")
                                      .reset_index(drop=True), check_exact=True, check_dtype=False)

    same(pd.read_parquet(out))
    same(ds.dataset(out).to_table().to_pandas())
    same(dd.read_parquet(out).compute())
    same(pl.read_parquet(out).to_pandas())
    same(pl.scan_parquet(out).collect().to_pandas())
    assert list(expected.columns) == ["sample", "patient_id", "visit_id", "feature", "position", "inner_position",
                                      "code", "score", "delta"]


def test_rollout_parts_have_no_delta_and_still_open_in_polars(tiny, tmp_path):
    import polars as pl

    model, data = tiny
    out = explain_cohort(model, data, "rollout", out=tmp_path / "r", batch_size=BATCH, progress=False)
    assert pl.read_parquet(out).height == len(read_attributions(out)) > 0
    assert "delta" not in read_attributions(out).columns


def test_a_truncated_part_is_named_then_recomputed(tiny, reference, tmp_path):
    out = run(tiny, tmp_path / "attr")
    part = out / "part-000001.parquet"
    part.write_bytes(part.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"part-000001\.parquet does not match its checksum"):
        read_attributions(out)
    run(tiny, out)
    assert_complete(out, reference[4])


def test_a_part_changed_from_outside_with_valid_parquet_is_recomputed(tiny, reference, tmp_path):
    out = run(tiny, tmp_path / "attr")
    (out / "part-000000.parquet").write_bytes((out / "part-000002.parquet").read_bytes())  # readable, wrong rows
    with pytest.raises(ValueError, match="part-000000.parquet"):
        read_attributions(out)
    run(tiny, out)
    assert_complete(out, reference[4])


def test_manifest_records_rows_and_checksums(tiny, tmp_path):
    import hashlib

    out = run(tiny, tmp_path / "attr")
    parts = read_manifest(out)["parts"]
    assert sorted(parts, key=int) == [str(i) for i in range(N_PARTS)]
    for index, entry in parts.items():
        data = (out / f"part-{int(index):06d}.parquet").read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["rows"] == len(pd.read_parquet(out / f"part-{int(index):06d}.parquet")) > 0


def test_a_missing_part_is_named_then_recomputed(tiny, reference, tmp_path):
    out = run(tiny, tmp_path / "attr")
    (out / "part-000002.parquet").unlink()
    with pytest.raises(ValueError, match=r"part .*part-000002\.parquet is missing; rerun explain_cohort"):
        read_attributions(out)
    run(tiny, out)
    assert_complete(out, reference[4])


def test_an_unfinished_run_reads_its_finished_parts_with_a_warning(tiny, reference, tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_bytes", _failing_write_bytes(at=4))  # manifest, part 0, manifest, part 1: fails
    with pytest.raises(OSError, match="injected"):
        run(tiny, tmp_path / "attr")
    monkeypatch.undo()
    assert files(tmp_path / "attr") == [MANIFEST, "part-000000.parquet"]
    with pytest.warns(UserWarning, match="holds 1 of 3 parts: the run is unfinished"):
        partial = read_attributions(tmp_path / "attr")
    pd.testing.assert_frame_equal(partial, reference[4][reference[4]["sample"] < BATCH], check_exact=True)


def test_a_folder_of_the_earlier_layout_is_read_and_never_resumed(tiny, reference, tmp_path):
    out = run(tiny, tmp_path / "attr")
    manifest = read_manifest(out)
    (out / MANIFEST).unlink()
    (out / "manifest.json").write_text(json.dumps(manifest["settings"]))
    pd.testing.assert_frame_equal(read_attributions(out), reference[4], check_exact=True)
    with pytest.raises(ValueError, match="earlier ehrexplain.*manifest.json"):
        run(tiny, out)
    (out / "part-000001.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(ValueError, match=r"cannot read part .*part-000001\.parquet"):
        read_attributions(out)


def test_a_part_the_manifest_does_not_list_is_removed(tiny, reference, tmp_path):
    out = run(tiny, tmp_path / "attr")
    (out / "part-000007.parquet").write_bytes((out / "part-000000.parquet").read_bytes())  # e.g. left by kill -9
    run(tiny, out)
    assert_complete(out, reference[4])


def test_a_non_empty_foreign_folder_is_refused_untouched(tiny, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        run(tiny, tmp_path)
    assert files(tmp_path) == ["notes.txt"]


# --- interruptions: whatever happens, the folder only ever holds correct, verified rows --------------------------

def _failing_write_bytes(at: int):
    """``Path.write_bytes`` that writes half of its ``at``-th call's data, then fails like a full disk."""
    original, calls = Path.write_bytes, itertools.count(1)

    def write_bytes(self, data):
        if next(calls) == at:
            original(self, data[: len(data) // 2])
            raise OSError(28, "No space left on device (injected)")
        return original(self, data)

    return write_bytes


#: A run whose k-th file write (manifest or part) fails; a run makes 2 * N_PARTS + 1 writes, so the largest k finishes.
RUNS = st.tuples(st.just("fail"), st.integers(1, 2 * N_PARTS + 2))
EVENTS = st.one_of(
    RUNS,
    st.tuples(st.just("truncate"), st.integers(0, N_PARTS - 1), st.integers(0, 400)),
    st.tuples(st.just("stale"), st.integers(0, N_PARTS - 1), st.binary(max_size=40)),
    st.tuples(st.just("delete"), st.integers(0, N_PARTS - 1)),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=RUNS, events=st.lists(EVENTS, max_size=4))
@example(first=("fail", 4), events=[("delete", 0), ("fail", 1)])  # found by CI: a run failing at its claim
def test_interrupted_and_damaged_runs_resume_to_the_uninterrupted_result(tiny, reference, tmp_path_factory, first, events):
    out = tmp_path_factory.mktemp("prop") / "attr"
    expected = reference[4]
    for event in [first, *events]:
        kind, index = event[0], event[1]
        part = out / f"part-{index:06d}.parquet"
        if kind == "fail":
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(Path, "write_bytes", _failing_write_bytes(at=index))
                try:
                    run(tiny, out)
                except OSError as error:
                    assert "injected" in str(error)
            assert not [name for name in files(out) if ".tmp-" in name]
            # What an interrupted run leaves is verified and correct. A run whose first write (claiming the folder)
            # failed changed nothing: the folder is as the events before left it (a deleted part still listed).
            if (out / MANIFEST).exists() and index > 1:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    partial = read_attributions(out)
                rows = expected[expected["sample"].isin(partial["sample"].unique())].reset_index(drop=True)
                pd.testing.assert_frame_equal(partial, rows, check_exact=True, check_dtype=False)
                if len(partial):  # every part on disk is listed: all readers see the same rows
                    pd.testing.assert_frame_equal(pd.read_parquet(out), partial, check_exact=True, check_dtype=False)
        elif kind == "truncate" and part.exists():
            part.write_bytes(part.read_bytes()[: event[2]])
        elif kind == "stale" and out.exists():
            (out / f".{part.name}.tmp-{999999 + index}").write_bytes(event[2])
        elif kind == "delete":
            part.unlink(missing_ok=True)
    run(tiny, out)
    assert_complete(out, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected, check_exact=True, check_dtype=False)


# --- two real processes on one folder, started together ----------------------------------------------------------

def _racer(tiny, root: str, steps: list[int], barrier, results) -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # "waiting for it to finish"
    for trial, trial_steps in enumerate(steps):
        barrier.wait()
        try:
            run(tiny, Path(root) / f"trial{trial}", steps=trial_steps)
            results.put((trial, trial_steps, "ok"))
        except ValueError as error:
            results.put((trial, trial_steps, str(error)))


def test_two_processes_on_one_folder_never_mix_settings(tiny, reference, tmp_path):
    """Per trial, two processes start explain_cohort on one new folder together: half the trials with other IG steps
    (one must be refused, naming the options), half with the same (both finish; nothing is written twice)."""
    context = multiprocessing.get_context("fork")  # the children share the model and data without pickling
    barrier, results = context.Barrier(2), context.Queue()
    first = [4] * RACE_TRIALS
    second = [8 if trial % 2 else 4 for trial in range(RACE_TRIALS)]
    racers = [context.Process(target=_racer, args=(tiny, str(tmp_path), steps, barrier, results)) for steps in (first, second)]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=120) for _ in range(2 * RACE_TRIALS)]
    for racer in racers:
        racer.join(timeout=60)
        assert racer.exitcode == 0
    by_trial = {trial: [o for o in outcomes if o[0] == trial] for trial in range(RACE_TRIALS)}
    for trial, (a, b) in by_trial.items():
        out = tmp_path / f"trial{trial}"
        steps = int(read_manifest(out)["settings"]["options"]["steps"])
        assert_complete(out, reference[steps])
        if a[1] == b[1]:
            assert a[2] == b[2] == "ok", (trial, a, b)
        else:
            refused = [o for o in (a, b) if o[2] != "ok"]
            assert len(refused) == 1 and refused[0][1] != steps, (trial, a, b)
            assert "other settings (options:" in refused[0][2] and "'steps': '" in refused[0][2]
