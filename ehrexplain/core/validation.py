"""One check of everything a caller passes to an interpreter, before any forward pass.

The batch is checked against the model's own schema (``feature_keys``,
``label_keys``, ``dataset.input_processors``, embedding sizes, ``max_seq_len``)
and the options against the method's signature. Exceptions, always naming the
feature key or option, what was expected and what was given:

- ``TypeError``: wrong type or dtype (a list or numpy array for a feature, float
  token ids, ``True`` for a count), or an unknown keyword (with "did you mean").
- ``ValueError``: a value the model cannot take (shape, length, vocabulary,
  NaN/infinity, empty or inconsistent batch, meta-device model).
- ``KeyError``: a feature key of the model is missing from the batch, or a
  baseline names a key the model does not have.

Example:
    >>> # checked = validate_call(model, IntegratedGradients.attribute, {"steps": 8, **batch})
"""

from __future__ import annotations

import difflib
import inspect

import numpy as np
import torch
from torch import nn

from .batch import _schema, check_feature_keys, feature_value
from .model_checks import check_model_and_batch

#: Batch keys that describe a record rather than feed the model; always allowed.
METADATA_KEYS = frozenset({"patient_id", "visit_id", "record_id", "embed"})
#: Options that must be positive integers (``None`` allowed where the signature defaults to it).
POSITIVE_INT_OPTIONS = ("steps", "internal_batch_size", "n_steps")


def validate_call(model: nn.Module, method, kwargs: dict) -> dict:
    """Check a call of ``method(**kwargs)`` on ``model``; return the keywords to pass on.

    Numpy integers become ``int``, tensors made under ``torch.inference_mode``
    are copied so autograd can use them, and float inputs and float-target labels
    are cast to the model's dtype (:mod:`.model_checks`); nothing else is converted.
    """
    kwargs = check_model_and_batch(model, kwargs)
    params = {
        name: p for name, p in inspect.signature(method).parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }  # fmt: skip
    options = {name: value for name, value in kwargs.items() if name in params}
    data = {name: value for name, value in kwargs.items() if name not in params}
    check_unknown_keywords(model, data, params, method.__qualname__)
    data, batch_size = check_batch(model, data)
    for name, value in options.items():
        options[name] = check_option(model, name, value, params[name].default, batch_size)
    return {**data, **options}


def check_unknown_keywords(model, data: dict, params: dict, owner: str) -> None:
    """``TypeError`` for a keyword that is neither an option, a batch key nor record metadata."""
    labels = getattr(model, "label_keys", None) or getattr(getattr(model, "dataset", None), "output_schema", {})
    known = set(getattr(model, "feature_keys", [])) | set(labels) | METADATA_KEYS
    for name in data:
        if name in known or name.endswith(("_id", "_ids")):
            continue
        choices = sorted(set(params) | known)
        raise TypeError(
            f"{owner}() got an unexpected keyword {name!r}{did_you_mean(name, choices)} It takes the options {sorted(params)} "
            f"and the batch keys {sorted(known - METADATA_KEYS)}"
        )


def check_batch(model, data: dict) -> tuple[dict, int | None]:
    """Check every feature of the batch; return it (inference tensors copied) and its size."""
    check_feature_keys(model, data)
    sizes, checked = {}, dict(data)
    for key in model.feature_keys:
        checked[key] = _check_feature(model, key, data[key])
        sizes[key] = feature_value(model, key, checked[key]).shape[0]
    for key in getattr(model, "label_keys", []):
        if isinstance(data.get(key), torch.Tensor):
            checked[key] = _usable(key, data[key])
            if data[key].dim() > 0:
                sizes[key] = data[key].shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the batch size differs across keys: {sizes}; every key needs one row per sample")
    batch_size = next(iter(sizes.values()), None)
    if batch_size == 0:
        raise ValueError(f"the batch is empty (0 samples in {sorted(sizes)}); pass at least one patient")
    return checked, batch_size


def _check_feature(model, key: str, feature):
    """One feature: a tensor or a tuple of tensors laid out as the processor's schema."""
    schema = _schema(model, key)
    if isinstance(feature, torch.Tensor):
        parts = (feature,)
    elif isinstance(feature, (tuple, list)) and feature and all(p is None or isinstance(p, torch.Tensor) for p in feature):
        parts = tuple(feature)
    else:
        raise TypeError(
            f"feature {key!r} must be a torch.Tensor or a tuple of tensors laid out as {schema} "
            f"(as PyHealth's dataloader gives), got {type(feature).__name__}"
        )
    if len(parts) not in (len(schema), len(schema) + 1):
        raise ValueError(f"feature {key!r} should be a tuple laid out as {schema}, got {len(parts)} tensor(s)")
    parts = tuple(_usable(key, p) for p in parts)
    value = parts[schema.index("value")]
    if value is None:
        raise TypeError(f"feature {key!r} has None in its 'value' slot; expected a tensor")
    if model.dataset.input_processors[key].is_token():
        check_token_ids(model, key, value, "feature")
    else:
        _check_continuous(model, key, value)
    _check_length(model, key, value)
    for name, part in zip(schema, parts):
        if name == "value" or part is None:
            continue
        if part.shape[:1] != value.shape[:1]:
            raise ValueError(f"feature {key!r}: its {name!r} has {part.shape[0]} rows but its value has {value.shape[0]}")
        if part.is_floating_point() and not torch.isfinite(part).all():
            raise ValueError(f"feature {key!r}: its {name!r} contains NaN or infinite values")
    return parts[0] if isinstance(feature, torch.Tensor) else parts


def _usable(key: str, part):
    if part is None:
        return None
    if part.device.type == "meta":
        raise ValueError(f"feature {key!r} is on the meta device (no values); pass real data")
    return part.clone() if part.is_inference() else part  # inference tensors cannot enter autograd


def _embedding_layer(model, key: str):
    getter = getattr(model, "get_embedding_model", None)
    embedding = getter() if callable(getter) else None
    layers = getattr(embedding, "embedding_layers", None)
    return layers[key] if layers is not None and key in layers else None


def expected_dims(model, key: str) -> int | None:
    """Dimensions of a batch's ``value`` tensor: one more than in the model's own first sample.

    ``None`` when the dataset cannot be indexed (duck-typed stand-ins).
    """
    try:
        sample = model.dataset[0][key]
    except Exception:  # noqa: BLE001 - any dataset without samples simply skips this check
        return None
    value = feature_value(model, key, sample) if isinstance(sample, (tuple, list)) else sample
    return torch.as_tensor(value).dim() + 1


def check_token_ids(model, key: str, ids, what: str) -> None:
    """Token ids: an integer tensor (not bool, not float) inside the model's vocabulary."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{what} {key!r} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"{what} {key!r} holds token ids and must be an integer tensor (torch.long), got {ids.dtype}")
    dims = expected_dims(model, key)
    if dims is not None and ids.dim() != dims:
        raise ValueError(f"{what} {key!r} must have {dims} dimensions (batch first), got shape {tuple(ids.shape)}")
    layer = _embedding_layer(model, key)
    vocab = getattr(layer, "num_embeddings", None)
    if vocab is None and hasattr(model.dataset.input_processors[key], "code_vocab"):
        vocab = len(model.dataset.input_processors[key].code_vocab)
    if ids.numel() and vocab is not None and (ids.min() < 0 or ids.max() >= vocab):
        bad = ids[(ids < 0) | (ids >= vocab)].unique()[:5].tolist()
        raise ValueError(f"{what} {key!r} has token id(s) {bad} outside the model's vocabulary 0..{vocab - 1}")


def _check_continuous(model, key: str, value: torch.Tensor) -> None:
    if not value.is_floating_point():
        raise TypeError(f"feature {key!r} holds continuous values and must be a float tensor, got {value.dtype}")
    if value.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"feature {key!r} is {value.dtype}; expected torch.float32 (use .float())")
    dims = expected_dims(model, key)
    if dims is not None and value.dim() != dims:
        raise ValueError(f"feature {key!r} must have {dims} dimensions (batch first), got shape {tuple(value.shape)}")
    width = getattr(_embedding_layer(model, key), "in_features", None)
    if width is not None and value.dim() >= 2 and value.shape[-1] != width:
        raise ValueError(f"feature {key!r} must have {width} values per row (the model's input width), got shape {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise ValueError(f"feature {key!r} contains NaN or infinite values; clean or impute them first")


def _check_length(model, key: str, value: torch.Tensor) -> None:
    limit = getattr(model, "max_seq_len", None)
    if isinstance(limit, int) and value.dim() >= 2 and value.shape[1] > limit:
        raise ValueError(
            f"feature {key!r} has {value.shape[1]} positions but {type(model).__name__} takes at most "
            f"max_seq_len={limit} (it would silently truncate); shorten the sequence"
        )


def did_you_mean(name: str, choices) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the closest ``choices`` (at most three), or ``""``.

    Example:
        >>> did_you_mean("return_delta", ["return_steps", "return_convergence_delta", "steps"])
        "; did you mean 'return_steps' or 'return_convergence_delta'?"
    """
    matches = difflib.get_close_matches(name, list(choices), n=3)
    return f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


def check_option(model, name: str, value, default, batch_size: int | None):
    """One option of the method, checked by its name; returns it with numpy integers as ``int``."""
    if name in POSITIVE_INT_OPTIONS:
        return positive_int(name, value, allow_none=default is None or name == "internal_batch_size")
    if name.startswith(("return_", "enforce_", "use_")):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"option {name!r} must be True or False, got {value!r}")
        return bool(value)
    if name == "target_class_idx":
        return check_target(value, batch_size)
    if name == "baseline":
        return check_baseline(model, value)
    return value


def positive_int(name: str, value, allow_none: bool = False):
    """``value`` as an ``int >= 1``; numpy integers accepted, bools and floats refused."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_target(value, batch_size: int | None):
    """``None``, an integer class, or one integer class per sample (``[batch]``)."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        tensor = torch.as_tensor(value)
        if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
            raise TypeError(f"option 'target_class_idx' must hold integer class indices, got dtype {tensor.dtype}")
        if tensor.numel() not in (1, batch_size):
            raise ValueError(
                f"option 'target_class_idx' has {tensor.numel()} entries; expected 1 or one per sample ({batch_size})"
            )
        return tensor.long()
    raise TypeError(f"option 'target_class_idx' must be an integer class index or a [batch] integer tensor, got {value!r}")


def check_baseline(model, baseline):
    """``None`` or ``{feature_key: tensor}``; token baselines integer ids inside the vocabulary."""
    if baseline is None:
        return None
    if not isinstance(baseline, dict):
        raise TypeError(f"option 'baseline' must be a dict {{feature_key: tensor}} or None, got {type(baseline).__name__}")
    for key, value in baseline.items():
        if key not in model.feature_keys:
            hint = did_you_mean(str(key), model.feature_keys)
            raise KeyError(f"baseline has unknown feature key {key!r}{hint} The model's feature keys are {sorted(model.feature_keys)}")
        if model.dataset.input_processors[key].is_token():
            check_token_ids(model, key, value, "baseline for")
        elif not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"baseline for {key!r} must be a float tensor, got {getattr(value, 'dtype', type(value).__name__)}")
        elif not torch.isfinite(value).all():
            raise ValueError(f"baseline for {key!r} contains NaN or infinite values")
    return baseline
