"""Peak memory of one DeepLIFT, Integrated Gradients and ``compare`` call on the 32 longest eICU demo records.

Run with ``python bench/bench_memory.py`` (``--help``; several minutes on two cores). The records and the
model are those of ``bench_ig_memory.py`` (the longest shipped eICU demo records with at most 456 codes, an
untrained seeded PyHealth Transformer). Each setting runs in its own child process, which makes one call at
the library's defaults and reports the largest rise of its resident memory during the call (sampled every
millisecond, glibc told to return freed memory):

* ``deeplift``: ``DeepLift(model).attribute(**batch)``, patients in passes within ``PASS_TOKENS``;
* ``deeplift, one pass``: the same with ``internal_batch_size=None`` (every ``[x; b]`` pair at once), whose
  scores and deltas the chunked ones must equal;
* ``integrated_gradients``: ``IntegratedGradients(model).attribute(**batch)`` (50 steps);
* ``compare``: ``compare(model, [batch])`` with its four default methods, metrics and sanity check.

The budget: each under 1 GiB (``BUDGET_MIB``). Measured on a loaded 2-core machine (about 10 minutes): DeepLIFT
366 MiB (1218 MiB in one pass, scores and deltas identical), IG 129 MiB, ``compare`` 370 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_ig_memory import long_records
from bench_interpreters import peak_memory

SETTINGS = ("deeplift", "deeplift, one pass", "integrated_gradients", "compare")
#: Most a call's memory may rise at the defaults, in MiB.
BUDGET_MIB = 1024


def call(setting: str, model, batch):
    """The call ``setting`` measures; what it returns is saved for the comparison of the two DeepLIFT runs."""
    from ehrexplain import DeepLift, IntegratedGradients
    from ehrexplain.evaluation import compare

    if setting == "compare":
        return compare(model, [batch], progress=False).to_dict()
    if setting == "integrated_gradients":
        return IntegratedGradients(model).attribute(**batch)
    size = None if setting == "deeplift, one pass" else "auto"
    return DeepLift(model).attribute(**batch, internal_batch_size=size, return_convergence_delta=True)


def child(args) -> None:
    """One setting: print ``{"peak_mib", "seconds"}`` as JSON, save what the call returned."""
    warnings.filterwarnings("ignore")
    model, batch, _ = long_records(args.cache, args.patients)
    result = {}

    def measured():
        start = time.perf_counter()
        result["value"] = call(args.setting, model, batch)
        result["seconds"] = time.perf_counter() - start

    peak = peak_memory(measured, torch.device("cpu"))
    torch.save(result["value"], _saved(args.cache, args.setting))
    print(json.dumps({"peak_mib": peak / 2**20, "seconds": result["seconds"]}))


def _saved(cache: str, setting: str) -> Path:
    return Path(cache) / f"{setting.replace(' ', '_').replace(',', '')}.pt"


def run_child(args, setting: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    argv = [sys.executable, __file__, "--child", setting, "--cache", args.cache, "--patients", str(args.patients)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["exit code %d" % done.returncode])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def deeplift_difference(cache: str) -> float:
    """Largest |difference| between the chunked and the one-pass DeepLIFT scores and deltas."""
    (scores, delta), (whole, whole_delta) = (torch.load(_saved(cache, s)) for s in SETTINGS[:2])
    diffs = [(scores[key] - whole[key]).abs().max().item() for key in whole]
    return max(diffs + [(delta - whole_delta).abs().max().item()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=32, help="the longest records of the demo")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=SETTINGS, dest="setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setting:
        return child(args)
    with tempfile.TemporaryDirectory() as cache:
        args.cache = cache
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, _, longest = long_records(cache, args.patients)  # processes the demo once; each child reads the cache
        print(f"{args.patients} longest eICU demo records (longest {longest} codes), defaults, CPU, "
              f"{torch.get_num_threads()} threads; budget {BUDGET_MIB} MiB a call")
        print(f"{'call':<22}{'peak rise MiB':>15}{'seconds':>9}{'in budget':>11}")
        results = {}
        for setting in args.settings:
            results[setting] = r = run_child(args, setting)
            if "error" in r:
                print(f"{setting:<22}  failed: {r['error']}")
                continue
            print(f"{setting:<22}{r['peak_mib']:>15.0f}{r['seconds']:>9.2f}{str(r['peak_mib'] < BUDGET_MIB):>11}")
        if all(s in results and "error" not in results[s] for s in SETTINGS[:2]):
            print(f"DeepLIFT chunked vs one pass: max |diff| of scores and deltas {deeplift_difference(cache):.2e}")


if __name__ == "__main__":
    main()
