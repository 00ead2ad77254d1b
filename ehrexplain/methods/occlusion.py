"""Leave-one-code-out occlusion: how much the target logit moves when one code is replaced by the baseline.

Paper:
    Matthew Zeiler and Rob Fergus. "Visualizing and Understanding Convolutional
    Networks." ECCV 2014 (occlusion); for text, Li, Monroe & Jurafsky,
    "Understanding Neural Networks through Representation Erasure", 2016.
    https://arxiv.org/abs/1311.2901

Algorithm (forward passes only, no gradients):
    1. ``f(x)``: the target logit of every patient; the target is fixed once, from ``x``.
    2. For every input value ``i`` that differs from its baseline (a code, or one
       number of a continuous feature), copy the patient's input with ``x_i``
       replaced by ``b_i`` (UNK for codes by default; a ``baseline`` of id 0 turns
       the code into padding, which the model masks out) and run all copies through the model
       in chunks of ``internal_batch_size`` rows (by default as many as hold
       ``PASS_TOKENS`` input values, ``_chunking``).
    3. ``score_i = f(x) - f(x with x_i := b_i)``.

Invariant: a value equal to its baseline scores exactly 0; padding keeps its
own value in the baseline, so padding scores 0. Every copy is one patient's own
input, so a batch gives what each patient gets alone. Unlike IG and DeepLIFT the
scores need not sum to ``f(x) - f(b)`` (interactions between codes are not
shared out), so there is no convergence delta.
"""

from __future__ import annotations


import torch

from ..core.batch import FeatureBatch, _schema, unpack_batch
from ..core.model_checks import check_finite_prediction
from ..core.model_state import evaluation_mode
from ._base import Interpreter, TargetIndex
from ._chunking import AUTO, INTERNAL_BATCH_SIZE, pass_rows, tokens_per_row
from ._embedding_hook import forward_substituted
from ._embedding_space import checked_baseline, target_logit
from .registry import register_method


@register_method(
    "occlusion", label="Occlusion (leave one code out)", signed=True, class_specific=True, uses_baseline=True,
    has_delta=False, needs_gradients=False, needs_attention=False,
    options=(INTERNAL_BATCH_SIZE,),
)
class Occlusion(Interpreter):
    """Leave-one-code-out occlusion for any PyHealth model: the model's own answer to "what matters".

    Needs nothing but forward passes, so it explains every model that takes a
    PyHealth batch. It costs one forward pass per real code (batched).

    Args:
        model: a PyHealth model (or any model taking a PyHealth batch and returning ``{"logit": ...}``).

    Example:
        >>> from ehrexplain.methods import Occlusion
        >>> ids = batch["conditions"]
        >>> scores = Occlusion(model).attribute(**batch)                 # code -> UNK
        >>> removed = Occlusion(model).attribute(**batch, baseline={"conditions": torch.zeros_like(ids)})  # -> padding
        >>> scores["conditions"].shape, bool((scores["conditions"][ids == 0] == 0).all())   # padding scores 0
        (torch.Size([8, 11]), True)
        >>> bool(torch.equal(removed["drugs"], scores["drugs"]))   # other features still go to UNK
        True
        >>> occluded = {**batch, "conditions": ids.clone()}
        >>> occluded["conditions"][0, 0] = 1                         # patient 0's first code -> UNK, by hand
        >>> by_hand = model(**batch)["logit"][0, 0] - model(**occluded)["logit"][0, 0]   # f(x) - f(x without it)
        >>> bool(torch.isclose(scores["conditions"][0, 0], by_hand, atol=1e-5))
        True
    """

    def attribute(self, baseline: dict[str, torch.Tensor] | None = None, target_class_idx: TargetIndex = None,
                  internal_batch_size: int | str | None = AUTO, **data) -> dict[str, torch.Tensor]:
        """``f(x) - f(x with one value replaced by its baseline)`` for every input value, shaped like the raw values.

        Args:
            baseline: per feature key, the value each position is replaced by
                (token ids or numbers, shaped like the input); default UNK for
                codes and ``1e-2`` for continuous values.
            target_class_idx: class to explain (int or ``[batch]``); default: predicted.
            internal_batch_size: occluded copies per forward pass; ``"auto"`` (default): as many
                as hold ``PASS_TOKENS`` input values, at most ``PASS_ROWS``; ``None``: all at once.
        """
        with evaluation_mode(self.model, self._call.tree), torch.no_grad():
            batch = unpack_batch(self.model, data)
            baselines = checked_baseline(batch, baseline, use_embeddings=True)
            rows = torch.arange(len(next(iter(batch.values.values()))), device=next(iter(batch.values.values())).device)
            bare = frozenset(key for key in batch.values if isinstance(data[key], torch.Tensor))
            logits = _logits(batch, {}, rows, bare)
            targets = self._targets(logits)
            f_x = target_logit(logits, targets)
            chunk_rows = pass_rows(internal_batch_size, tokens_per_row(batch.values))
            scores = {}
            for key, value in batch.values.items():
                base = baselines[key].to(value.dtype)
                scores[key] = torch.zeros(value.shape, dtype=f_x.dtype, device=value.device)
                cells = (value != base).nonzero()  # [n, dims]: the sample, then the position
                for chunk in cells.split(chunk_rows or max(len(cells), 1)):
                    samples, where = chunk[:, 0], tuple(chunk.T)
                    occluded = value[samples].clone()
                    occluded[(torch.arange(len(chunk), device=chunk.device),) + where[1:]] = base[where]
                    f_occluded = target_logit(_logits(batch, {key: occluded}, samples, bare), targets[samples])
                    scores[key][where] = f_x[samples] - f_occluded
        return scores


def _logits(batch: FeatureBatch, values: dict[str, torch.Tensor], rows: torch.Tensor, bare=frozenset()) -> torch.Tensor:
    """Logits of the samples ``rows`` with ``values`` swapped in, run as the model runs a dataloader batch.

    Masks that ehrexplain derived (features whose schema has none) are left out,
    so the model derives them from the occluded values itself, as it would for a
    batch that held padding there. Keys in ``bare`` (the caller passed a bare
    tensor) go to the model as one: RETAIN, CNN, AdaCare, GCN, ... read a tuple
    differently. The loss is skipped and a placeholder label given (RNN, TCN, ...
    read the label in ``forward``).
    """
    kwargs = {key: parts[0] if key in bare else parts[: len(_schema(batch.model, key))]
              for key, parts in batch.forward_kwargs(values, rows).items()}  # fmt: skip
    logits = forward_substituted(batch.model, kwargs, {}, {}, len(rows), rows.device)
    occluded = f" with {sorted(values) or 'no'} value(s) occluded"
    check_finite_prediction(batch.model, logits, rows, batch.masks, context=occluded)
    return logits
