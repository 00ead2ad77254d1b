"""Peak memory of one Integrated Gradients call on long real records: rows per pass from tokens, or 1024 rows.

Run with ``python bench/bench_ig_memory.py`` (a few minutes; ``--help``).
The records are the longest of the shipped eICU demo with at most 456 codes, as in the issue
(PyHealth's ``MortalityPredictionEICU`` on diagnosis, medication and physicalExam), the model an untrained
PyHealth Transformer (embedding 16, 2 heads, 1 layer; memory does not depend on the weights).
The first run processes the demo into a temporary cache (about 40 s).

Each setting runs in its own child process, which loads the same records and the same
seeded model, makes one ``IntegratedGradients(model).attribute(**batch, steps=...)`` call
and reports the largest rise of its resident memory during the call (sampled every
millisecond, glibc told to return freed memory, as in ``bench_interpreters.py``). Settings:

* ``rows``: ``internal_batch_size=1024``, the old default (rows counted, not tokens);
* ``tokens``: the default, ``"auto"``: as many rows as hold ``PASS_TOKENS`` input values;
* ``128 rows``: the workaround the issue measured.

The scores of every setting are compared with those of the first: the chunking changes
memory, never a result. Issue (32 patients, 32 steps): 1024 rows peaked at about 13 GB.
Measured with ``--patients 32 --steps 32`` on a loaded 2-core machine: the call's memory
rose by 3814 MiB with 1024-row passes, 124 MiB with the default's 25 rows (30.6x less)
and 509 MiB with 128 rows; the scores were identical. Seconds are one run each.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_interpreters import peak_memory

SETTINGS = {"rows": 1024, "tokens": "auto", "128 rows": 128}
TABLES = ["diagnosis", "medication", "physicalExam"]


def long_records(cache: str, patients: int, most_codes: int = 456):
    """The untrained, seeded Transformer and the ``patients`` longest eICU demo records (``most_codes`` at most) as one batch."""
    from pyhealth.datasets import eICUDataset
    from pyhealth.models import Transformer
    from pyhealth.tasks import MortalityPredictionEICU

    from ehrexplain.data import as_source, eicu_demo

    logging.getLogger("pyhealth").setLevel(logging.WARNING)
    samples = eICUDataset(root=str(eicu_demo()), tables=TABLES, cache_dir=cache).set_task(MortalityPredictionEICU())
    keys = ("conditions", "procedures", "drugs")
    length = [sum(len(samples[i][key]) for key in keys) for i in range(len(samples))]
    longest = sorted((i for i in range(len(samples)) if length[i] <= most_codes), key=lambda i: -length[i])[:patients]
    torch.manual_seed(0)
    model = Transformer(dataset=samples, embedding_dim=16, heads=2, num_layers=1).eval()
    return model, as_source(samples).batch(longest), max(length[i] for i in longest)


def child(args) -> None:
    """One setting: print ``{"peak_mib", "seconds", "rows_per_pass", "tokens_per_row"}`` as JSON, save the scores."""
    from ehrexplain import IntegratedGradients
    from ehrexplain.methods._chunking import pass_rows, tokens_per_row

    warnings.filterwarnings("ignore")
    model, batch, longest = long_records(args.cache, args.patients)
    size = SETTINGS[args.setting]
    tokens = tokens_per_row({key: batch[key] for key in model.feature_keys})
    ig = IntegratedGradients(model, steps=args.steps)
    result = {}

    def call():
        start = time.perf_counter()
        result["scores"] = ig.attribute(**batch, internal_batch_size=size)
        result["seconds"] = time.perf_counter() - start

    peak = peak_memory(call, torch.device("cpu"))
    torch.save(result["scores"], Path(args.cache) / f"scores-{args.setting}.pt")
    rows = min(pass_rows(size, tokens), args.patients * (args.steps + 1))
    print(json.dumps({"peak_mib": peak / 2**20, "seconds": result["seconds"], "rows_per_pass": rows,
                      "tokens_per_row": tokens, "longest": longest}))  # fmt: skip


def run_child(args, setting: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    argv = [sys.executable, __file__, "--child", setting, "--cache", args.cache,
            "--patients", str(args.patients), "--steps", str(args.steps)]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["exit code %d" % done.returncode])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=16, help="the longest records of the demo (the issue: 32)")
    parser.add_argument("--steps", type=int, default=16, help="IG steps (the issue: 32)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=list(SETTINGS), dest="setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setting:
        return child(args)
    with tempfile.TemporaryDirectory() as cache:
        args.cache = cache
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            long_records(cache, 1)  # processes the demo once; each child reads the cache
        results = {setting: run_child(args, setting) for setting in args.settings}
        first = next(iter(results))
        reference = torch.load(Path(cache) / f"scores-{first}.pt") if "error" not in results[first] else None
        info = next((r for r in results.values() if "error" not in r), {})
        print(f"IG, {args.patients} longest eICU demo records (longest {info.get('longest')} codes, "
              f"{info.get('tokens_per_row')} padded tokens per row), {args.steps} steps "
              f"({args.patients * (args.steps + 1)} path rows), CPU, {torch.get_num_threads()} threads")
        print(f"{'setting':<12}{'rows/pass':>10}{'peak rise MiB':>15}{'seconds':>9}{'vs tokens':>11}{'max |diff|':>12}")
        base = results.get("tokens", {}).get("peak_mib")
        for setting, r in results.items():
            if "error" in r:
                print(f"{setting:<12}  failed: {r['error']}")
                continue
            scores = torch.load(Path(cache) / f"scores-{setting}.pt")
            diff = max((scores[k] - reference[k]).abs().max().item() for k in scores) if reference else float("nan")
            ratio = f"{r['peak_mib'] / base:>10.1f}x" if base else f"{'':>11}"
            print(f"{setting:<12}{r['rows_per_pass']:>10}{r['peak_mib']:>15.0f}{r['seconds']:>9.2f}{ratio}{diff:>12.2e}")


if __name__ == "__main__":
    main()
