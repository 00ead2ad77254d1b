"""Cost of the two ways IG and DeepLIFT run a model, and of a recurrent model explained exactly.

Run with ``make bench`` (or ``python bench/bench_model_paths.py --help``).

1. The trained demo Transformer, explained by Integrated Gradients and DeepLIFT twice in
   the same run: through the embedding-layer hook (the model's own ``forward`` with its
   embeddings substituted, the path every model without ``forward_from_embedding`` takes)
   and through ``forward_from_embedding`` (the fast path, the default where a model has
   it). The calls take turns and each time is a median, so a burst of load hits both
   alike. Target: hook / fast <= 1.2x, with equal scores (max |difference| ~ 0).
2. A PyHealth ``RNN`` (GRU) trained briefly on the same cohort, which has no
   ``forward_from_embedding``: IG and DeepLIFT time per patient, and DeepLIFT's worst
   relative delta |delta| / |f(x) - f(b)| over the batch (exact through the GRU, which
   DeepLIFT unrolls into a cell loop: float rounding, <= 1e-4).

Measured: two runs of ``python bench/bench_model_paths.py --threads 1`` (``--repeats 5``, then 9) on a
2-core machine shared with other jobs (load about 7): hook / fast 1.18x and 1.08x for IG (50 steps),
1.07x and 0.99x for DeepLIFT, max |difference| 0 (bitwise equal scores) every time. A profile of the IG
calls showed the same ops on both paths, with the hook's own bookkeeping (embedding the ids the hook
then replaces, the ids check) too small to rank; the spread between runs is the machine's load. The
GRU RNN: IG 7.5 and 3.1 ms per patient, exact DeepLIFT 7.3 and 2.6 ms, worst |delta| / |f(x) - f(b)|
1.2e-06 in both runs (IG's 50-step max |delta|, PyHealth's α grid: 7.6e-02 logits).
"""

from __future__ import annotations

import argparse
import warnings

import torch

from bench_interpreters import demo_model_and_batch, max_difference, median_seconds

#: The hook path may cost at most this many times the fast path.
TARGET_RATIO = 1.2


def compare_paths(args, model, batch, device: torch.device) -> None:
    """Hook path vs ``forward_from_embedding``: time ratio and max |difference| of the scores, per method."""
    from ehrexplain import DeepLift, IntegratedGradients
    from ehrexplain.methods._embedding_space import hook_path

    calls = {
        f"IG ({args.steps} steps)": lambda: IntegratedGradients(model).attribute(**batch, steps=args.steps),
        "DeepLIFT (exact)": lambda: DeepLift(model).attribute(**batch),
    }

    def hooked(call):
        def run():
            with hook_path():
                return call()

        return run

    print(f"{'method':<20}{'fast s':>10}{'hook s':>10}{'hook/fast':>11}{'target':>9}{'max |diff|':>12}")
    for name, fast in calls.items():
        hook = hooked(fast)
        seconds_fast, seconds_hook = median_seconds([fast, hook], args.repeats, device)
        difference = max_difference(hook(), fast())
        ratio = seconds_hook / seconds_fast
        verdict = "ok" if ratio <= TARGET_RATIO else "SLOWER"
        print(f"{name:<20}{seconds_fast:>10.4f}{seconds_hook:>10.4f}{ratio:>10.2f}x"
              f"{f'<= {TARGET_RATIO}x':>9}{difference:>12.2e}  {verdict}")  # fmt: skip


def recurrent_model(args, device: torch.device):
    """A PyHealth GRU ``RNN`` trained for ``args.rnn_epochs`` on the demo cohort, and ``args.patients`` of its patients."""
    from pyhealth.models import RNN

    from ehrexplain.data import make_cohort, train_model

    cohort = make_cohort(n_patients=300, seed=0)
    torch.manual_seed(0)
    rnn = RNN(dataset=cohort.dataset, embedding_dim=32, hidden_dim=32, rnn_type="GRU")
    rnn = train_model(rnn, cohort.dataset, epochs=args.rnn_epochs, lr=1e-2, seed=0).to(device)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in cohort.batch(range(args.patients)).items()}
    return rnn, batch


def bench_recurrent(args, device: torch.device) -> None:
    """IG and exact DeepLIFT on the GRU ``RNN``: time per patient and DeepLIFT's worst relative delta."""
    from ehrexplain import DeepLift, IntegratedGradients
    from ehrexplain.methods._embedding_space import sample_totals

    rnn, batch = recurrent_model(args, device)
    ig = lambda: IntegratedGradients(rnn).attribute(**batch, steps=args.steps, return_convergence_delta=True)  # noqa: E731
    lift = lambda: DeepLift(rnn).attribute(**batch, return_convergence_delta=True)  # noqa: E731
    seconds_ig, seconds_lift = median_seconds([ig, lift], args.repeats, device)
    scores, delta = lift()
    relative = (delta.abs() / (sample_totals(scores) - delta).abs()).max().item()
    _, ig_delta = ig()
    print(f"PyHealth RNN (GRU, {args.rnn_epochs} epochs, no forward_from_embedding: hook path), {args.patients} patients:")
    print(f"  IG ({args.steps} steps) {1e3 * seconds_ig / args.patients:.2f} ms per patient, "
          f"max |delta| {ig_delta.abs().max().item():.1e} logits")  # fmt: skip
    print(f"  DeepLIFT (exact)  {1e3 * seconds_lift / args.patients:.2f} ms per patient, "
          f"worst |delta| / |f(x) - f(b)| = {relative:.1e} (exact: <= 1e-4)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--rnn-epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice); "
                                                               "1 is steadier on a loaded machine")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, batch = demo_model_and_batch(args)
    print(f"device {device}, {torch.get_num_threads()} threads, {args.patients} patients, median of {args.repeats} runs")
    print("Trained demo Transformer: embedding-layer hook vs forward_from_embedding")
    compare_paths(args, model, batch, device)
    bench_recurrent(args, device)


if __name__ == "__main__":
    main()
