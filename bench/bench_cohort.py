"""Patients per second for explain_cohort in-process and on a local 2-worker Dask cluster.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50, help="IG steps")
    parser.add_argument("--method", default="integrated_gradients")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from ehrexplain.cohort.cluster import local_client
    from ehrexplain.data.synthetic import make_cohort, train_demo_model

    cohort = make_cohort(n_patients=args.patients, seed=0)
    model = train_demo_model(cohort, kind="transformer", seed=0, epochs=3)
    n = len(cohort.samples)
    with tempfile.TemporaryDirectory() as tmp:
        here_many, many = timed_run(model, cohort.dataset, f"{tmp}/many", args, threads=args.workers)
        here_one, one = timed_run(model, cohort.dataset, f"{tmp}/one", args, threads=1)
        start = time.perf_counter()
        with local_client(n_workers=args.workers) as client:
            warm_up, _ = timed_run(model, cohort.dataset, f"{tmp}/warm", args, client=client)
            started = time.perf_counter() - start
            on_cluster, dask = timed_run(model, cohort.dataset, f"{tmp}/dask", args, client=client)
    pd.testing.assert_frame_equal(dask, one, check_exact=True)
    print(f"{args.method}, {n} patients, batch {args.batch_size}, {args.steps} steps, {os.cpu_count()} CPU cores")
    rows = [
        (f"in-process, {args.workers} torch threads", here_many),
        ("in-process, 1 torch thread", here_one),
        (f"Dask LocalCluster, {args.workers} worker processes x 1 thread", on_cluster),
    ]
    for name, seconds in rows:
        print(f"  {name:<52} {n / seconds:8.1f} patients/s  ({1000 * seconds / n:.2f} ms/patient)")
    print(f"  cluster start + warm-up run (imports, model shipped once): {started:.1f} s")
    print(f"  ratio Dask / in-process ({args.workers} threads): {here_many / on_cluster:.2f}x")
    largest = (dask["score"] - many["score"]).abs().max()
    print(f"  Dask == in-process on 1 thread: identical; max |diff| vs {args.workers} threads: {largest:.1e}")


if __name__ == "__main__":  # the cluster's worker processes re-import this file
    main()
