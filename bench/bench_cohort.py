"""Patients per second for explain_cohort in-process and on a local 2-worker Dask cluster.

``--data eicu`` explains the shipped eICU-CRD demo (real records, hundreds of codes) instead of the
synthetic cohort, and the cost is also printed per token (per code), the unit that carries over to
a cohort of other record lengths.

Run with ``make bench`` (or ``python bench/bench_cohort.py --help``). The same
cohort and model are explained three ways, each into a fresh directory: here
on as many torch threads as there are workers, here on one thread, and on a
local cluster of single-threaded worker processes (timed after a warm-up run
that pays each worker's PyHealth import and receives the model). The script
checks that the cluster's Parquet content equals the one-thread in-process
content exactly, prints the largest difference from the multi-thread run
(float sums depend on the thread count), and prints the ratio of the rates.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402


def timed_run(model, dataset, out, args, client=None, threads=None) -> tuple[float, pd.DataFrame]:
    from ehrexplain.cohort.explain import explain_cohort, read_attributions

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        start = time.perf_counter()
        explain_cohort(model, dataset, args.method, out=out, batch_size=args.batch_size, client=client, progress=False, steps=args.steps)
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    return elapsed, read_attributions(out)


def synthetic_model_and_samples(args, tmp):
    """The demo Transformer trained on ``args.patients`` synthetic patients, and those patients."""
    from ehrexplain.data.synthetic import make_cohort, train_demo_model

    cohort = make_cohort(n_patients=args.patients, seed=0)
    model = train_demo_model(cohort, kind="transformer", seed=0, epochs=3)
    tokens = sum(len(sample[key]) for sample in cohort.samples for key in cohort.feature_keys)
    return model, cohort.dataset, len(cohort.samples), tokens, "synthetic patients"


def eicu_model_and_samples(args, tmp):
    """A small Transformer trained on the eICU demo's mortality samples, and the first ``args.patients`` of them."""
    import logging

    from pyhealth.datasets import eICUDataset
    from pyhealth.models import Transformer
    from pyhealth.tasks import MortalityPredictionEICU

    from ehrexplain.data import eicu_demo
    from ehrexplain.data.training import train_model

    logging.getLogger("pyhealth").setLevel(logging.WARNING)
    base = eICUDataset(root=str(eicu_demo()), tables=["diagnosis", "medication", "physicalExam"], cache_dir=f"{tmp}/cache")
    samples = base.set_task(MortalityPredictionEICU())
    torch.manual_seed(0)
    model = Transformer(dataset=samples, embedding_dim=16, heads=2, num_layers=1, max_seq_len=2048)
    model = train_model(model, samples, epochs=1, batch_size=64, seed=0)
    subset = samples.subset(list(range(min(args.patients, len(samples)))))
    tokens = sum(len(subset[i][key]) for i in range(len(subset)) for key in model.feature_keys)
    return model, subset, len(subset), tokens, "eICU demo samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50, help="IG steps")
    parser.add_argument("--method", default="integrated_gradients")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", choices=("synthetic", "eicu"), default="synthetic",
                        help="eicu: the shipped eICU-CRD demo (--patients caps the samples explained)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from ehrexplain.cohort.cluster import local_client

    with tempfile.TemporaryDirectory() as tmp:
        model, dataset, n, tokens, what = (eicu_model_and_samples if args.data == "eicu" else synthetic_model_and_samples)(args, tmp)
        here_many, many = timed_run(model, dataset, f"{tmp}/many", args, threads=args.workers)
        here_one, one = timed_run(model, dataset, f"{tmp}/one", args, threads=1)
        start = time.perf_counter()
        with local_client(n_workers=args.workers) as client:
            warm_up, _ = timed_run(model, dataset, f"{tmp}/warm", args, client=client)
            started = time.perf_counter() - start
            on_cluster, dask = timed_run(model, dataset, f"{tmp}/dask", args, client=client)
    pd.testing.assert_frame_equal(dask, one, check_exact=True)
    print(f"{args.method}, {n} {what} ({tokens / n:.0f} codes each on average), batch {args.batch_size}, "
          f"{args.steps} steps, {os.cpu_count()} CPU cores")
    rows = [
        (f"in-process, {args.workers} torch threads", here_many),
        ("in-process, 1 torch thread", here_one),
        (f"Dask LocalCluster, {args.workers} worker processes x 1 thread", on_cluster),
    ]
    for name, seconds in rows:
        print(f"  {name:<52} {n / seconds:8.1f} patients/s  ({1000 * seconds / n:.2f} ms/patient, "
              f"{1e6 * seconds / tokens:.0f} µs/code)")
    print(f"  cluster start + warm-up run (imports, model shipped once): {started:.1f} s")
    print(f"  ratio Dask / in-process ({args.workers} threads): {here_many / on_cluster:.2f}x")
    largest = (dask["score"] - many["score"]).abs().max()
    print(f"  Dask == in-process on 1 thread: identical; max |diff| vs {args.workers} threads: {largest:.1e}")


if __name__ == "__main__":  # the cluster's worker processes re-import this file
    main()
