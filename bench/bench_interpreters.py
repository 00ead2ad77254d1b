"""Time ehrexplain's interpreters against PyHealth 2.1's on the same model and batch.

Run with ``make bench`` (or ``python bench/bench_interpreters.py --help``).
Every ratio compares two measurements taken in this run on this machine, so the
numbers mean the same on a laptop, on CI and on a GPU box. Target (issue 3):
Integrated Gradients at least 4x faster than PyHealth's, with equal values on
PyHealth's α grid.

Peak memory is the largest rise of the process's resident memory (CPU) or of
``torch.cuda.max_memory_allocated`` (GPU) during one call, above the level
before the call. On CPU the script re-runs itself with glibc's mmap threshold
fixed, so large tensors are returned to the system when freed and every call's
peak is visible in the resident size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import warnings

import torch


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def peak_memory(call, device: torch.device) -> int:
    """Largest memory rise (bytes) while ``call()`` runs."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    before, peak, running = resident_bytes(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        call()
    finally:
        running[0] = False
        sampler.join()
    return max(peak[0], resident_bytes()) - before


def median_seconds(call, repeats: int, device: torch.device) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def max_difference(ours: dict, theirs: dict) -> float:
    return max((ours[k].float() - theirs[k].float()).abs().max().item() for k in ours)


def with_fixed_mmap_threshold() -> None:
    """Re-exec once with ``MALLOC_MMAP_THRESHOLD_`` set (glibc reads it at start-up only)."""
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    if args.device == "cpu":
        with_fixed_mmap_threshold()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)

    from pyhealth.interpret import methods as pyhealth_methods

    from ehrexplain import methods as ours
    from ehrexplain.synthetic import make_cohort, train_demo_model

    device = torch.device(args.device)
    cohort = make_cohort(n_patients=300, seed=0)
    model = train_demo_model(cohort, kind="transformer", seed=0).to(device)
    batch = cohort.batch(list(range(args.patients)))
    steps = args.steps
    pairs = {
        "Integrated Gradients": (
            lambda: ours.IntegratedGradients(model).attribute(**batch, steps=steps),
            lambda: pyhealth_methods.IntegratedGradients(model).attribute(**batch, steps=steps),
        ),
        "Attention Rollout": (
            lambda: ours.AttentionRollout(model).attribute(**batch),
            lambda: pyhealth_methods.AttentionRollout(model).attribute(**batch),
        ),
        "Chefer relevance": (
            lambda: ours.CheferRelevance(model).attribute(**batch),
            lambda: pyhealth_methods.CheferRelevance(model).attribute(**batch),
        ),
        "DeepLIFT": (
            lambda: ours.DeepLift(model).attribute(**batch),
            lambda: pyhealth_methods.DeepLift(model).attribute(**batch),
        ),
    }
    print(f"device {device}, {args.patients} patients, IG steps {steps}, median of {args.repeats} runs")
    print(f"{'method':<22}{'ehrexplain s':>13}{'PyHealth s':>12}{'speed-up':>10}{'peak MB ours':>14}{'peak MB PyH':>13}{'max |diff|':>12}")
    for name, (run_ours, run_theirs) in pairs.items():
        seconds_ours = median_seconds(run_ours, args.repeats, device)
        seconds_theirs = median_seconds(run_theirs, args.repeats, device)
        memory_ours = peak_memory(run_ours, device) / 2**20
        memory_theirs = peak_memory(run_theirs, device) / 2**20
        difference = max_difference(run_ours(), run_theirs())
        print(
            f"{name:<22}{seconds_ours:>13.4f}{seconds_theirs:>12.4f}{seconds_theirs / seconds_ours:>9.1f}x"
            f"{memory_ours:>14.1f}{memory_theirs:>13.1f}{difference:>12.2e}"
        )
    print("DeepLIFT values differ by design: PyHealth rescales to force completeness and zeroes")
    print("multipliers of ReLU units that switch on between baseline and input; see tests/test_deeplift.py.")


if __name__ == "__main__":
    main()
