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

The result is one :class:`CheckedCall`: the checked keywords, the model's module tree and
dtype (walked once), and the class each sample is explained for (:class:`Target`, resolved
once); a method reads them from it and checks nothing again.

Example:
    >>> from ehrexplain import IntegratedGradients
    >>> checked = validate_call(model, IntegratedGradients.attribute, {"steps": 8, **batch})
    >>> checked.kwargs["steps"], sorted(checked.kwargs) == sorted({"steps": 8, **batch})   # the same keywords, checked
    (8, True)
    >>> validate_call(model, IntegratedGradients.attribute, {"step": 8, **batch})
    Traceback (most recent call last):
    ...
    TypeError: IntegratedGradients.attribute() got an unexpected keyword 'step'; did you mean 'steps' ...
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .batch import _schema, check_feature_keys, feature_value
from .model_checks import in_model_dtype, model_dtype
from .model_state import ModelTree

#: Batch keys that describe a record rather than feed the model; always allowed.
METADATA_KEYS = frozenset({"patient_id", "visit_id", "record_id", "embed"})


@dataclass(frozen=True)
class Option:
    """One option of an interpreter: its type, range, default and where it goes.

    ``where`` is ``"init"`` (the constructor takes it), ``"call"`` (``attribute``
    does) or ``"both"`` (a constructor default the call may override). ``bounds`` is ``(low, high)`` with ``interval`` saying which ends are
    closed (``"[]"``, ``"[)"``, ``"(]"``, ``"()"``); ``choices`` lists the allowed
    strings; ``optional`` allows ``None``; ``words`` are strings taken besides ``kind``
    (``internal_batch_size="auto"``).

    Example:
        >>> Option("discard_ratio", float, 0.0, "init", bounds=(0, 1), interval="[)").check(np.float32(0.5))
        0.5
        >>> Option("steps", int, 50, bounds=(1, math.inf)).check(np.int64(8))
        8
    """

    name: str
    kind: type
    default: object = None
    where: str = "call"
    bounds: tuple | None = None
    interval: str = "[]"
    choices: tuple = ()
    optional: bool = False
    words: tuple = ()

    def check(self, value, owner: str = ""):
        """``value`` as a plain Python ``kind`` (numpy scalars converted), or a ``TypeError``/``ValueError`` naming the option."""
        if value is None and (self.optional or self.default is None):
            return None
        if isinstance(value, str) and value in self.words:
            return value
        prefix = f"{owner}: " if owner else ""
        value = self._typed(value, prefix)
        if self.choices and value not in self.choices:
            raise ValueError(f"{prefix}unknown {self.name} {value!r}; {self.name} must be one of {self.choices}")
        if self.bounds is not None:
            (low, high), (left, right) = self.bounds, self.interval
            inside = (low <= value if left == "[" else low < value) and (value <= high if right == "]" else value < high)
            if not inside:
                raise ValueError(f"{prefix}{self.name} must be {self._wanted()}, got {value!r}")
        return value

    def _wanted(self) -> str:
        if self.kind is int and self.bounds == (1, math.inf):
            return "a positive integer"
        if self.bounds is not None:
            (low, high), (left, right) = self.bounds, self.interval
            return f"{'an integer' if self.kind is int else 'a real number'} in {left}{low:g}, {high:g}{right}"
        return {bool: "True or False", int: "an integer", float: "a real number", str: "a string"}[self.kind]

    def _typed(self, value, prefix: str):
        is_bool = isinstance(value, (bool, np.bool_))
        if self.kind is bool and is_bool:
            return bool(value)
        if self.kind is int and not is_bool and isinstance(value, (int, np.integer)):
            return int(value)
        if self.kind is float and not is_bool and isinstance(value, (int, float, np.integer, np.floating)):
            return float(value)
        if self.kind is str and isinstance(value, str):
            return value
        wanted = " or ".join([self._wanted(), *map(repr, self.words)])
        raise TypeError(f"{prefix}{self.name} must be {wanted}, got {value!r} ({type(value).__name__})")


@dataclass(frozen=True)
class Target:
    """The class each sample is explained for, resolved once per call from ``target_class_idx``.

    ``classes`` is the ``[batch]`` class per sample that the caller chose, already checked
    (in range; ``0`` for every sample of a one-logit binary model, whose single logit is
    the evidence for class 1 whichever class is asked for), or ``None``: the predicted
    class. A multilabel model has no one predicted class (each label its own logit), so
    it needs a chosen one.

    Example:
        >>> target = Target(torch.tensor([1, 0]), n_outputs=3, multilabel=False, model_name="Net")
        >>> target.indices(torch.zeros(2, 3)).tolist()
        [1, 0]
        >>> Target(None, 3, False, "Net").indices(torch.tensor([[0.0, 2.0, 1.0]])).tolist()   # the predicted class
        [1]
    """

    classes: torch.Tensor | None
    n_outputs: int | None
    multilabel: bool
    model_name: str

    def indices(self, logits: torch.Tensor) -> torch.Tensor:
        """``[batch]`` class indices into the last dimension of ``logits`` (``[batch, classes]``)."""
        n_classes = logits.shape[-1]
        if self.classes is None:
            if self.multilabel:
                raise ValueError(
                    f"{self.model_name} is a multilabel model ({n_classes} labels, each its own logit), so "
                    "there is no one predicted class to explain by default; pass target_class_idx: a label index "
                    "(int) or one per sample ([batch] tensor)"
                )
            return logits.argmax(dim=-1)  # a single logit gives 0 for every row
        if self.n_outputs is None:  # a model that cannot say how many logits it has: checked against them
            check_target_range(self.classes, n_classes)
        classes = self.classes.to(logits.device)
        return torch.zeros_like(classes) if n_classes == 1 else classes


def resolve_target(model, target, batch_size: int | None) -> Target:
    """The :class:`Target` of a checked ``target_class_idx`` (``None``, an int or a ``[batch]`` long tensor).

    Example:
        >>> import types
        >>> binary = types.SimpleNamespace(get_output_size=lambda: 1, label_keys=["label"])
        >>> resolve_target(binary, 1, batch_size=3).classes.tolist()   # one logit: class 1 is logit 0
        [0, 0, 0]
    """
    n_outputs = output_size(model)
    multilabel = getattr(model, "mode", None) == "multilabel"
    if target is None:
        return Target(None, n_outputs, multilabel, type(model).__name__)
    classes = torch.as_tensor(target).long().reshape(-1)
    if batch_size is not None and classes.numel() == 1:
        classes = classes.expand(batch_size)
    if n_outputs == 1:
        classes = torch.zeros_like(classes)
    return Target(classes, n_outputs, multilabel, type(model).__name__)


@dataclass(frozen=True)
class CheckedCall:
    """A call checked once at the boundary, handed to the method: nothing inside checks it again.

    Attributes:
        kwargs: the checked keywords to call the method with (batch and options).
        tree: the model's modules, parameters and buffers, walked once (:class:`~.model_state.ModelTree`).
        dtype: the model's one floating dtype (``None`` when it has no floating tensors).
        target: the class each sample is explained for (:class:`Target`).
    """

    kwargs: dict
    tree: ModelTree
    dtype: torch.dtype | None
    target: Target


def validate_call(model: nn.Module, method, kwargs: dict, schema: dict | None = None) -> CheckedCall:
    """Check a call of ``method(**kwargs)`` on ``model``; return it as one :class:`CheckedCall`.

    ``schema`` maps option names to their :class:`Option`; an option it lacks is
    checked by its name (``target_class_idx``, ``baseline``, ``return_*``).
    Numpy scalars become Python numbers, batch tensors are detached from the caller's
    autograd graph (no ``.grad`` reaches them; tensors made under ``torch.inference_mode``
    are copied so autograd can use them), and float inputs and float-target labels are
    cast to the model's dtype (:mod:`.model_checks`); nothing else is converted.
    """
    tree = ModelTree.of(model) if isinstance(model, nn.Module) else ModelTree((), (), ())
    dtype = model_dtype(model, tree)
    kwargs = in_model_dtype(model, kwargs, dtype)
    params = {
        name: p for name, p in inspect.signature(method).parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }  # fmt: skip
    options = {name: value for name, value in kwargs.items() if name in params}
    data = {name: value for name, value in kwargs.items() if name not in params}
    check_unknown_keywords(model, data, params, method.__qualname__)
    data, batch_size = check_batch(model, data)
    owner = method.__qualname__.split(".")[-2] if "." in method.__qualname__ else method.__qualname__
    for name, value in options.items():
        option = (schema or {}).get(name)
        options[name] = option.check(value, owner) if option else check_option(model, name, value, batch_size)
    target = resolve_target(model, options.get("target_class_idx"), batch_size)
    return CheckedCall({**data, **options}, tree, dtype, target)


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
    """``part`` detached from the caller's autograd graph (no ``.grad`` reaches the caller's tensor)."""
    if part is None:
        return None
    if part.device.type == "meta":
        raise ValueError(f"feature {key!r} is on the meta device (no values); pass real data")
    return part.clone() if part.is_inference() else part.detach()  # inference tensors cannot enter autograd


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


def check_vocabulary(model, dataset) -> None:
    """``ValueError`` naming the first feature key whose code vocabulary in ``dataset`` is not the model's.

    Token ids only mean a code through the vocabulary they were built with: a
    cohort processed with other vocabularies would be explained under the wrong
    code names (the model reads id 2 as 'E55.9', the cohort calls it 'E11.9').

    Example:
        >>> check_vocabulary(model, cohort.dataset)   # the cohort the model was trained on: nothing to say
        >>> from types import SimpleNamespace
        >>> other = SimpleNamespace(input_processors={"conditions": SimpleNamespace(code_vocab={"E11.9": 2})})
        >>> check_vocabulary(model, other)
        Traceback (most recent call last):
        ...
        ValueError: feature 'conditions' of the data has another vocabulary than the model's: token id 2 is 'E11.9' ...
    """
    mine = getattr(getattr(model, "dataset", None), "input_processors", {}) or {}
    theirs = getattr(dataset, "input_processors", {}) or {}
    for key in getattr(model, "feature_keys", []):
        expected = getattr(mine.get(key), "code_vocab", None)
        got = getattr(theirs.get(key), "code_vocab", None)
        if expected is None or got is None or got == expected:
            continue
        names = {i: code for code, i in expected.items()}
        clash = next(((i, code) for code, i in got.items() if names.get(i) != code), None)
        detail = f": token id {clash[0]} is {clash[1]!r} in the data but {names.get(clash[0], 'unknown')!r} for the model" if clash else ""
        raise ValueError(
            f"feature {key!r} of the data has another vocabulary than the model's{detail}; "
            "process the data with the model's own processors (the dataset it was trained on, or its subset)"
        )


def did_you_mean(name: str, choices) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the closest ``choices`` (at most three), or ``""``.

    Example:
        >>> did_you_mean("return_delta", ["return_steps", "return_convergence_delta", "steps"])
        "; did you mean 'return_steps' or 'return_convergence_delta'?"
    """
    matches = difflib.get_close_matches(name, list(choices), n=3)
    return f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


def check_option(model, name: str, value, batch_size: int | None):
    """An option every method shares, checked by its name: the target, the baseline, ``return_*`` flags."""
    if name.startswith(("return_", "enforce_", "use_")):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"option {name!r} must be True or False, got {value!r}")
        return bool(value)
    if name == "target_class_idx":
        target = check_target(value, batch_size)
        n_outputs = output_size(model)
        if target is not None and n_outputs is not None:
            check_target_range(target, n_outputs)
        return target
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


def output_size(model) -> int | None:
    """The number of logits a PyHealth model gives (1 for binary), or ``None`` when the model cannot say."""
    getter = getattr(model, "get_output_size", None)
    if not callable(getter) or len(getattr(model, "label_keys", None) or []) != 1:
        return None
    return int(getter())


def check_target_range(target, n_outputs: int) -> None:
    """``ValueError`` unless every class in ``target`` exists; a one-logit (binary) model takes 0 and 1.

    Example:
        >>> check_target_range(2, n_outputs=1)
        Traceback (most recent call last):
        ...
        ValueError: target_class_idx 2 is out of range for this binary (one logit, classes 0 and 1) model (valid indices 0..1)
    """
    valid = 2 if n_outputs == 1 else n_outputs
    classes = torch.as_tensor(target)
    if (classes < 0).any() or (classes >= valid).any():
        kind = "binary (one logit, classes 0 and 1)" if n_outputs == 1 else f"{n_outputs}-class"
        raise ValueError(
            f"target_class_idx {target} is out of range for this {kind} model (valid indices 0..{valid - 1})"
        )


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
