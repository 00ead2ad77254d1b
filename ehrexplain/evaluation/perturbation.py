"""Score perturbed copies of a batch: the engine behind the faithfulness metrics.

A :class:`Perturber` fixes the target class on the unperturbed batch, ranks each
sample's real (non-padding) tokens by attribution, and returns the target
probability after removing any chosen tokens (replaced by 0, the padding id).

Example:
    >>> from ehrexplain import AttentionRollout
    >>> perturber = Perturber(model, batch, AttentionRollout(model).attribute(**batch))
    >>> drop = perturber.full - perturber.probability(perturber.top(0.1, at_least_one=True))
    >>> drop.shape                      # per patient: the fall in probability without its top 10 % tokens
    torch.Size([8])
    >>> bool(perturber.probability(perturber.top(0.0, at_least_one=False)).equal(perturber.full))  # none removed
    True
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch

from ..core.batch import _schema, as_tuple, unpack_batch
from ..core.model_state import evaluation_mode


def predict(model, data: dict, target: Optional[torch.Tensor] = None):
    """``([B] probability of target, target)``; ``target`` defaults to the predicted class.

    A one-logit (binary) model has one probability, P(class 1), whichever class
    is asked for: the target is then 0, the column read, as the interpreters do.
    """
    with evaluation_mode(model), torch.no_grad():
        out = model(**data)
    logit = out["logit"].reshape(len(out["logit"]), -1)
    prob = out.get("y_prob")
    if prob is None:  # a non-PyHealth model: apply PyHealth's binary/multiclass rule
        prob = logit.sigmoid() if logit.shape[1] == 1 else logit.softmax(-1)
    prob = prob.reshape(logit.shape)
    if target is None:
        target = prob.argmax(1)  # 0 for every row of a one-logit model
    elif prob.shape[1] == 1:
        target = torch.zeros_like(target)
    target = target.to(prob.device)
    return prob.gather(1, target.view(-1, 1)).squeeze(1).double().cpu(), target


def check_attributions(fb, attributions: dict, name: str = "attributions") -> None:
    for key, value in fb.values.items():
        if key not in attributions:
            raise ValueError(f"{name} has no entry for feature key '{key}'; got keys {sorted(attributions)}")
        if tuple(attributions[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{name}['{key}'] has shape {tuple(attributions[key].shape)} but the batch value has shape "
                f"{tuple(value.shape)}; return one score per input position"
            )


def per_row(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``[B]`` tensor shaped to broadcast against ``like`` ``[B, ...]``."""
    return x.view(-1, *([1] * (like.dim() - 1)))


class Perturber:
    """One batch with its fixed target and attribution ranking; scores perturbed copies."""

    def __init__(self, model, batch: dict, attributions: dict):
        self.model, self.batch, self.fb = model, batch, unpack_batch(model, batch)
        check_attributions(self.fb, attributions)
        self.real, self.ranks, self.n_real = {}, {}, {}
        for key, value in self.fb.values.items():
            real = self.fb.masks[key].bool()
            while real.dim() < value.dim():
                real = real.unsqueeze(-1)
            real = real.expand_as(value) & ((value != 0) if key in self.fb.token_keys else True)
            score = attributions[key].detach().to(value.device).float().reshape(len(value), -1)
            order = score.masked_fill(~real.reshape(score.shape), -math.inf).argsort(dim=1, descending=True, stable=True)
            rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
            self.real[key], self.ranks[key] = real, rank.reshape(value.shape)
            self.n_real[key] = real.reshape(len(value), -1).sum(1)
        self.target = None
        self.full = self.probability({key: torch.zeros_like(real) for key, real in self.real.items()})

    def top(self, fraction: float, at_least_one: bool) -> dict:
        """Per key, the mask of the top ``ceil(fraction * n_real)`` real tokens."""
        out = {}
        for key, rank in self.ranks.items():
            n_real = self.n_real[key]
            # Round before ceil so that 0.1 * 30 does not become 4 through float error.
            count = torch.ceil(torch.round(n_real.double() * fraction, decimals=9)).long()
            count = torch.minimum(count.clamp(min=1), n_real) if at_least_one else count
            out[key] = (rank < per_row(count, rank)) & self.real[key]
        return out

    def rest(self, chosen: dict) -> dict:
        """Real tokens outside ``chosen``."""
        return {key: self.real[key] & ~mask for key, mask in chosen.items()}

    def _forward(self, remove: dict) -> torch.Tensor:
        data = dict(self.batch)
        for key, value in self.fb.values.items():
            parts, schema = list(as_tuple(self.fb.inputs[key])), _schema(self.model, key)
            parts[schema.index("value")] = new = value.masked_fill(remove[key], 0)
            if "mask" in schema:  # a removed token must leave the model's own mask too
                i, keep = schema.index("mask"), new != 0
                while keep.dim() > parts[i].dim():
                    keep = keep.any(-1)
                parts[i] = parts[i] * keep.to(parts[i].dtype)
            bare = isinstance(self.batch[key], torch.Tensor) and len(schema) == 1
            data[key] = parts[0] if bare else tuple(parts[: len(schema)])
        prob, self.target = predict(self.model, data, self.target)
        return prob

    def probability(self, remove: dict) -> torch.Tensor:
        """``[B]`` target probability with the ``remove`` tokens replaced by 0."""
        prob = self._forward(remove)
        bad = ~torch.isfinite(prob)
        if bad.any():
            message = f"{type(self.model).__name__} returned NaN for {int(bad.sum())} sample(s) with an emptied"
            warnings.warn(message + " feature; re-scored them keeping its least important token", RuntimeWarning, 3)
            kept = {}
            for key, rm in remove.items():
                last = self.ranks[key] == per_row(self.n_real[key] - 1, rm)
                emptied = per_row((rm == self.real[key]).reshape(len(rm), -1).all(1), rm)
                kept[key] = rm & ~(last & emptied)
            prob[bad] = self._forward(kept)[bad]
        return prob
