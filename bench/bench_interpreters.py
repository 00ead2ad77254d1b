"""Time ehrexplain's interpreters against PyHealth 2.1's on the same model and batch.

Run with ``make bench`` (or ``python bench/bench_interpreters.py --help``).
Every ratio compares two measurements taken in this run on this machine, so the
numbers mean the same on a laptop, on CI and on a GPU box. Target (issue 3):
Integrated Gradients at least 4x faster than PyHealth's, with equal values on
PyHealth's α grid.

Peak memory is the largest rise of the process's resident memory (CPU) or of
``torch.cuda.max_memory_allocated`` (GPU) during one call, above the level
before the call, measured in a child process (see ``peaks_in_child``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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


def seconds(call, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def median_seconds(calls, repeats: int, device: torch.device) -> list[float]:
    """Median time of each call; the calls take turns, so a burst of load hits them alike."""
    for call in calls:
        call()  # warm-up
    times = [[] for _ in calls]
    for _ in range(repeats):
        for call, measured in zip(calls, times):
            measured.append(seconds(call, device))
    return [statistics.median(measured) for measured in times]


def max_difference(ours: dict, theirs: dict) -> float:
    return max((ours[k].float() - theirs[k].float()).abs().max().item() for k in ours)


def demo_model_and_batch(args):
    """The trained demo Transformer and ``args.patients`` of its patients, on ``args.device``."""
    from ehrexplain.data.synthetic import make_cohort, train_demo_model

    torch.manual_seed(0)
    device = torch.device(args.device)
    cohort = make_cohort(n_patients=300, seed=0)
    model = train_demo_model(cohort, kind="transformer", seed=0).to(device)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in cohort.batch(range(args.patients)).items()}
    return model, batch


def long_records(model, batch, codes: int) -> dict:
    """``batch`` with every token feature replaced by ``codes`` random codes of the model's vocabulary per patient.

    Real EHR records hold hundreds of codes; the demo's hold about ten, where the rollout's
    ``[batch, L, L]`` products cost nothing next to the forward pass.
    """
    generator = torch.Generator().manual_seed(0)
    long = dict(batch)
    for key in model.feature_keys:
        vocab = len(model.dataset.input_processors[key].code_vocab)
        long[key] = torch.randint(2, vocab, (len(batch[key]), codes), generator=generator).to(batch[key].device)
    return long


def build_pairs(args, model, batch) -> dict:
    """``{row name: (ehrexplain call, PyHealth call)}`` on the trained demo Transformer."""
    from pyhealth.interpret import methods as pyhealth_methods

    from ehrexplain import methods as ours

    steps = args.steps
    pyhealth_ig = lambda: pyhealth_methods.IntegratedGradients(model).attribute(**batch, steps=steps)  # noqa: E731
    pairs = {
        "Integrated Gradients": (lambda: ours.IntegratedGradients(model).attribute(**batch, steps=steps), pyhealth_ig),
        "IG, path in one pass": (
            lambda: ours.IntegratedGradients(model).attribute(**batch, steps=steps, internal_batch_size=None),
            pyhealth_ig,
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
    if args.codes:
        long = long_records(model, batch, args.codes)
        pairs[f"Rollout, {args.codes} codes"] = (
            lambda: ours.AttentionRollout(model).attribute(**long),
            lambda: pyhealth_methods.AttentionRollout(model).attribute(**long),
        )
        pairs[f"Chefer, {args.codes} codes"] = (
            lambda: ours.CheferRelevance(model).attribute(**long),
            lambda: pyhealth_methods.CheferRelevance(model).attribute(**long),
        )
    return pairs


def deeplift_rules(args, model, batch, device: torch.device) -> None:
    """DeepLIFT's two multiplier rules side by side: time (and vs IG) and max |delta| / |f(x) - f(b)|."""
    from ehrexplain import methods as ours
    from ehrexplain.methods._embedding_space import sample_totals

    rules = ("gradient", "exact")
    calls = [lambda rule=rule: ours.DeepLift(model, multiplier_rule=rule).attribute(**batch) for rule in rules]
    ig = lambda: ours.IntegratedGradients(model).attribute(**batch, steps=args.steps)  # noqa: E731
    times = dict(zip(rules + ("IG",), median_seconds(calls + [ig], args.repeats, device)))
    print(f"DeepLIFT rules: exact / gradient time {times['exact'] / times['gradient']:.2f}x (target <= 3x), "
          f"IG ({args.steps} steps) / exact {times['IG'] / times['exact']:.1f}x")
    for rule in rules:
        scores, delta = ours.DeepLift(model, multiplier_rule=rule).attribute(**batch, return_convergence_delta=True)
        gap = sample_totals(scores) - delta
        print(f"  {rule:<9}{times[rule]:>9.4f} s   max |delta| / |f(x) - f(b)| = {(delta.abs() / gap.abs()).max().item():.2e}")


def peaks_mib(pairs: dict, device: torch.device) -> dict:
    """``{row name: [peak MiB of ehrexplain, peak MiB of PyHealth]}``."""
    return {name: [peak_memory(run, device) / 2**20 for run in pair] for name, pair in pairs.items()}


def peaks_in_child(argv: list[str]) -> dict:
    """Run ``--memory-only`` in a child process whose glibc returns freed tensors to the system.

    With glibc's default (adaptive) mmap threshold, memory freed by an earlier
    call is reused without showing up in the resident size; fixing the
    threshold makes every call's peak visible. It also slows allocation, which
    is why timings are taken in this process and peaks in the child.
    """
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    child = subprocess.run([sys.executable, __file__, *argv, "--memory-only"], env=env, capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--codes", type=int, default=300, help="codes per feature of the long-record rows (0: none)")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only", default="", help="comma-separated words; time only the rows whose name has one, "
                                                   "e.g. --only rollout,chefer")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    model, batch = demo_model_and_batch(args)
    pairs = build_pairs(args, model, batch)
    if args.only:
        words = [word.lower() for word in args.only.split(",")]
        pairs = {name: pair for name, pair in pairs.items() if any(word in name.lower() for word in words)}
    if args.memory_only:
        print(json.dumps(peaks_mib(pairs, device)))
        return
    if device.type == "cpu":
        peaks = peaks_in_child(sys.argv[1:])
    else:
        peaks = peaks_mib(pairs, device)

    from ehrexplain.data.synthetic import make_cohort

    (build,) = median_seconds([lambda: make_cohort(n_patients=500, seed=1)], args.repeats, torch.device("cpu"))
    print(f"device {device}, {args.patients} patients, IG steps {args.steps}, median of {args.repeats} runs")
    print(f"{'method':<22}{'ehrexplain s':>13}{'PyHealth s':>12}{'speed-up':>10}{'peak MB ours':>14}{'peak MB PyH':>13}{'max |diff|':>12}")
    for name, (run_ours, run_theirs) in pairs.items():
        seconds_ours, seconds_theirs = median_seconds([run_ours, run_theirs], args.repeats, device)
        difference = max_difference(run_ours(), run_theirs())
        memory_ours, memory_theirs = peaks[name]
        print(
            f"{name:<22}{seconds_ours:>13.4f}{seconds_theirs:>12.4f}{seconds_theirs / seconds_ours:>9.1f}x"
            f"{memory_ours:>14.1f}{memory_theirs:>13.1f}{difference:>12.2e}"
        )
    print("DeepLIFT values differ by design: PyHealth rescales to force completeness and zeroes")
    print("multipliers of ReLU units that switch on between baseline and input; see tests/test_deeplift.py.")
    if "DeepLIFT" in pairs:
        deeplift_rules(args, model, batch, device)
    print(f"make_cohort(n_patients=500): {build:.3f} s")


if __name__ == "__main__":
    main()
