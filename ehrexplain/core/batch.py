"""Reading a PyHealth batch, written once for every interpreter.

A PyHealth batch maps each feature key to a tensor or to a tuple laid out by the
feature's processor ``schema()`` (e.g. ``("value",)`` or ``("time", "value")``).
This module finds the ``value`` slot, derives padding masks, checks the batch,
and maps attributions back to the raw input shapes.

Example:
    >>> from pyhealth.datasets import get_dataloader
    >>> batch = next(iter(get_dataloader(cohort.dataset, batch_size=4)))
    >>> unpacked = unpack_batch(model, batch)
    >>> unpacked.values["conditions"].shape, sorted(unpacked.token_keys)
    (torch.Size([4, 6]), ['conditions', 'drugs', 'procedures'])
    >>> bool(torch.equal(unpacked.masks["conditions"].bool(), batch["conditions"] != 0))   # 1 = a code, 0 = padding
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def _processor(model: nn.Module, key: str):
    return model.dataset.input_processors[key]


def _schema(model: nn.Module, key: str) -> tuple[str, ...]:
    return tuple(_processor(model, key).schema())


def inverse_vocab(dataset, key: str) -> dict[int, str]:
    """Token id to code string for a token feature of ``dataset``.

    Raises:
        ValueError: the feature has no code vocabulary (e.g. a continuous feature).

    Example:
        >>> codes = inverse_vocab(cohort.dataset, "conditions")
        >>> codes[0], codes[1], codes[2]
        ('<pad>', '<unk>', 'E55.9')
    """
    processor = dataset.input_processors[key]
    if not hasattr(processor, "code_vocab"):
        raise ValueError(f"feature {key!r} has no code vocabulary (it is {type(processor).__name__})")
    return {i: code for code, i in processor.code_vocab.items()}


def as_tuple(feature) -> tuple:
    """A feature as a tuple: a bare tensor becomes ``(tensor,)``."""
    return (feature,) if isinstance(feature, torch.Tensor) else tuple(feature)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def check_feature_keys(model: nn.Module, data: dict) -> None:
    """Raise ``KeyError`` naming every feature key the model needs but ``data`` lacks.

    Example:
        >>> check_feature_keys(model, batch)                      # every key the model needs: nothing to say
        >>> check_feature_keys(model, {"label": batch["label"]})
        Traceback (most recent call last):
        ...
        KeyError: "batch is missing feature key(s) ['conditions', 'procedures', 'drugs'] that Transformer needs; ..."
    """
    missing = [key for key in model.feature_keys if key not in data]
    if missing:
        raise KeyError(
            f"batch is missing feature key(s) {missing} that {type(model).__name__} needs; "
            f"the batch has keys {sorted(data)}"
        )


def feature_value(model: nn.Module, key: str, feature) -> torch.Tensor:
    """The ``value`` tensor of one feature, found through its processor schema."""
    schema = _schema(model, key)
    if "value" not in schema:
        raise ValueError(f"feature '{key}' has schema {schema} without a 'value' entry")
    parts = as_tuple(feature)
    if len(parts) < len(schema):
        raise ValueError(f"feature '{key}' should be a tuple laid out as {schema}, got {len(parts)} tensor(s)")
    return parts[schema.index("value")]


def padding_mask(model: nn.Module, key: str, feature) -> torch.Tensor:
    """1 where a feature holds data, 0 at padding, shaped like PyHealth's own masks.

    Uses the schema's ``mask`` when present; otherwise token id 0 is padding. A
    continuous feature has one mask entry per position the model embeds: per time
    step (padding when its whole feature vector is zero) for ``[batch, steps,
    width]`` values, and a single always-real ``[batch, 1]`` entry for one vector
    per patient (``[batch, width]``), which PyHealth embeds as one position.
    """
    schema = _schema(model, key)
    parts = as_tuple(feature)
    if "mask" in schema:
        return parts[schema.index("mask")]
    value = parts[schema.index("value")]
    if _processor(model, key).is_token():
        return (value != 0).int()
    if value.dim() >= 3:
        return (value.abs().sum(dim=-1) != 0).int()
    return torch.ones(value.shape[0], 1, dtype=torch.int, device=value.device)


def expand_to_inputs(model: nn.Module, scores: dict[str, torch.Tensor], data: dict) -> dict[str, torch.Tensor]:
    """Expand per-position scores to each feature's raw value shape.

    For nested inputs (visits x codes) a visit's score is repeated over its codes.
    Padding codes of token features get exactly zero.
    """
    expanded = {}
    for key, score in scores.items():
        value = feature_value(model, key, data[key]).to(score.device)
        while score.dim() < value.dim():
            score = score.unsqueeze(-1)
        score = score.expand_as(value)
        if _processor(model, key).is_token():
            score = score * (value != 0)
        expanded[key] = score
    return expanded


@dataclass
class FeatureBatch:
    """A batch split into what interpreters need.

    Attributes:
        inputs: per key, the feature tuple in schema order, with the padding mask
            appended when the schema has none (PyHealth models accept it there).
        values: per key, the ``value`` tensor on the model's device.
        masks: per key, the padding mask (1 = data).
        token_keys: keys whose values are discrete token ids.
    """

    model: nn.Module
    inputs: dict[str, tuple]
    values: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    token_keys: frozenset[str]

    def value_index(self, key: str) -> int:
        """Position of the ``value`` tensor inside ``inputs[key]``."""
        return _schema(self.model, key).index("value")

    def forward_kwargs(self, values: dict[str, torch.Tensor], rows: torch.Tensor | None = None) -> dict[str, tuple]:
        """Feature tuples with ``values`` in the ``value`` slot.

        With ``rows``, row ``i`` takes its other parts (masks, times) from sample ``rows[i]``.
        """
        kwargs = {}
        for key, parts in self.inputs.items():
            if rows is not None:
                parts = tuple(part[rows] if isinstance(part, torch.Tensor) else part for part in parts)
            i = self.value_index(key)
            kwargs[key] = parts[:i] + (values.get(key, parts[i]),) + parts[i + 1 :]
        return kwargs


def unpack_batch(model: nn.Module, data: dict) -> FeatureBatch:
    """Check a dataloader batch and split it into values, masks and feature tuples.

    Raises:
        KeyError: a feature key of the model is missing from ``data``.
        ValueError: a value tensor holds NaN or infinity.
    """
    check_feature_keys(model, data)
    device = model_device(model)
    inputs, values, masks, token_keys = {}, {}, {}, set()
    for key in model.feature_keys:
        parts = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in as_tuple(data[key]))
        value = feature_value(model, key, parts)
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"feature '{key}' contains NaN or infinite values; clean or impute them first")
        mask = padding_mask(model, key, parts)
        if "mask" not in _schema(model, key):
            parts = parts + (mask,)
        if _processor(model, key).is_token():
            token_keys.add(key)
        inputs[key], values[key], masks[key] = parts, value, mask
    return FeatureBatch(model, inputs, values, masks, frozenset(token_keys))
