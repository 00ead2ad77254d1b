"""How many rows one model pass takes: bounded by the tokens it holds, not by its rows.

Integrated Gradients runs ``path points × patients`` rows through the model,
occlusion one copy of a patient per code and DeepLIFT each patient's input
beside its baseline (two rows a patient, :func:`pass_pairs`); a row of a real record holds hundreds
of tokens, and a pass's memory grows with its tokens (32 eICU patients of up to
456 tokens, 1024 rows per pass: about 13 GB). By default (``internal_batch_size="auto"``)
a pass takes as many rows as keep it within :data:`PASS_TOKENS` input values,
and at most :data:`PASS_ROWS`; an explicit ``internal_batch_size`` wins, and
``None`` runs everything in one pass. The chunking never changes a result: each
row is one patient's own input.

Example:
    >>> pass_rows("auto", tokens_per_row=456), pass_rows("auto", tokens_per_row=8), pass_rows(128, 456)
    (35, 1024, 128)
    >>> pass_pairs("auto", tokens_per_row=456), pass_pairs(128, 456)   # DeepLIFT: patients, two rows each
    (17, 128)
"""

from __future__ import annotations

import math

import torch

from ..core.validation import Option

#: Input values (token ids, or numbers of a continuous feature, padding included) one
#: model pass takes by default. On the 32 longest eICU demo records (634 padded tokens a
#: row, 32 steps) an IG call's memory rose by 124 MiB with these 25-row passes, 3814 MiB
#: with 1024-row ones, and gave the same scores (``bench/bench_ig_memory.py``).
PASS_TOKENS = 2**14
#: Most rows one pass takes by default, however short they are: on a CPU a larger
#: pass is no faster (``make bench``).
PASS_ROWS = 1024
#: ``internal_batch_size`` that picks the rows per pass from :data:`PASS_TOKENS`.
AUTO = "auto"
#: The ``internal_batch_size`` call option of every method that chunks its passes.
INTERNAL_BATCH_SIZE = Option("internal_batch_size", int, AUTO, bounds=(1, math.inf), optional=True, words=(AUTO,))


def tokens_per_row(values: dict[str, torch.Tensor]) -> int:
    """Input values of one row (a patient), over every feature, as padded in the batch."""
    return sum(value[0].numel() for value in values.values())


def pass_rows(internal_batch_size: int | str | None, tokens_per_row: int) -> int | None:
    """Rows per model pass: ``internal_batch_size``, or for ``"auto"`` as many as fit :data:`PASS_TOKENS`."""
    if internal_batch_size != AUTO:
        return internal_batch_size
    return max(1, min(PASS_ROWS, PASS_TOKENS // max(tokens_per_row, 1)))


def pass_pairs(internal_batch_size: int | str | None, tokens_per_row: int) -> int | None:
    """Patients per DeepLIFT pass, each bringing two rows (input and baseline): ``internal_batch_size``, or
    for ``"auto"`` half the rows :func:`pass_rows` allows, so a pass holds at most :data:`PASS_TOKENS` values."""
    if internal_batch_size != AUTO:
        return internal_batch_size
    return max(1, pass_rows(AUTO, tokens_per_row) // 2)
