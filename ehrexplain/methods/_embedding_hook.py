"""Running a model's own ``forward`` with its embedding layer's output substituted.

Captum's layer attribution is the model: while the model runs, a temporary
forward hook on its embedding layer (PyHealth's ``EmbeddingModel``) replaces
the embeddings of the token features with the points a method asks about (IG's
path points, DeepLIFT's ``[x; b]`` pair). The model keeps its own masking,
pooling and recurrence, so no ``forward_from_embedding`` is needed. The hook is
removed, and the loss and probability helpers patched out for the call are
restored, also on error.

Example:
    >>> ids = {"conditions": batch["conditions"]}          # the ids in the batch the model runs on
    >>> unk = {"conditions": (batch["conditions"] != 0).long()}   # every condition -> UNK, padding kept
    >>> points = embedding_layer(model)(unk)               # the points: embeddings of other codes
    >>> kwargs = {key: value for key, value in batch.items() if key != "label"}
    >>> logits = forward_substituted(model, kwargs, points, ids, rows=8, device="cpu")
    >>> logits.shape, bool(torch.allclose(logits, model(**{**batch, **unk})["logit"], atol=1e-6))  # as if run on them
    (torch.Size([8, 1]), True)
    >>> bool(torch.allclose(logits, model(**batch)["logit"]))   # not the batch's own prediction
    False
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from torch import nn

#: PyHealth models that do not compute through an embedding layer, so gradients cannot reach their inputs.
TREE_ENSEMBLES = frozenset({"XGBoostModel", "CaliForest", "GradientBoostedTreeModel"})


def embedding_layer(model: nn.Module) -> nn.Module | None:
    """The module whose output is substituted: ``get_embedding_model()``, else ``model.embedding_model``.

    A model of your own names its layer by defining ``get_embedding_model()``.

    Example:
        >>> type(embedding_layer(model)).__name__        # the demo Transformer's
        'EmbeddingModel'
        >>> embedding_layer(torch.nn.Linear(2, 2)) is None  # no embedding layer
        True
    """
    getter = getattr(model, "get_embedding_model", None)
    layer = getter() if callable(getter) else None
    if layer is None:
        layer = getattr(model, "embedding_model", None)
    return layer if isinstance(layer, nn.Module) else None


def refusal(model: nn.Module, method: str) -> str | None:
    """Why ``method`` cannot substitute ``model``'s embeddings, or ``None`` if it can."""
    name = type(model).__name__
    if name in TREE_ENSEMBLES:
        return (
            f"{method} needs gradients through the model, but {name} is a tree ensemble "
            "(its predictions are piecewise constant and have no embedding layer); use a model-agnostic explainer"
        )
    if embedding_layer(model) is None:
        return (
            f"{method}(use_embeddings=True) needs {name} to embed its token features with a layer it exposes: "
            "PyHealth's EmbeddingModel as `model.embedding_model`, or any module returning {feature key: embedding} "
            "from `model.get_embedding_model()`"
        )
    return None


@contextmanager
def _substituted(layer: nn.Module, points: dict[str, torch.Tensor], ids: dict[str, torch.Tensor]):
    """While active, ``layer`` returns ``points[key]`` instead of its embedding of ``key``.

    ``ids`` are the token ids the points stand for. A model may reshape them before
    embedding (PyHealth's MLP flattens visits × codes); the points follow when the
    ids the layer got are exactly ``ids`` reshaped. Yields the set of keys substituted.
    """
    substituted: set[str] = set()

    def hook(module, args, output):
        embedded, rest = (output[0], output[1:]) if isinstance(output, tuple) else (output, ())
        given = args[0] if args else {}
        replaced = dict(embedded)
        for key in points.keys() & embedded.keys():
            shape = embedded[key].shape
            same_ids = key in given and given[key].shape == shape[:-1] and torch.equal(given[key], ids[key].reshape(shape[:-1]))
            if not same_ids or points[key].numel() != embedded[key].numel():
                raise ValueError(
                    f"{type(module).__name__} embedded feature {key!r} from other ids than the batch's "
                    f"(shape {tuple(shape)}, the points have shape {tuple(points[key].shape)}): the model changes "
                    "this feature before embedding it in a way the attribution cannot follow"
                )
            replaced[key] = points[key].reshape(shape)
            substituted.add(key)
        return (replaced, *rest) if rest else replaced

    handle = layer.register_forward_hook(hook)
    try:
        yield substituted
    finally:
        handle.remove()


def _no_loss(logits, *args, **kwargs) -> torch.Tensor:
    return torch.zeros((), device=logits.device)


@contextmanager
def _logits_only(model: nn.Module):
    """Skip the loss and ``y_prob`` (outside the logit's graph; DeepLIFT would flag their ops)."""
    patched = {"get_loss_function": lambda: _no_loss, "prepare_y_prob": lambda logits: logits.detach()}
    saved = {name: model.__dict__[name] for name in patched if name in model.__dict__}
    try:
        model.__dict__.update(patched)
        yield
    finally:
        for name in patched:
            model.__dict__.pop(name, None)
        model.__dict__.update(saved)


def placeholder_labels(model: nn.Module, rows: int, device) -> dict[str, torch.Tensor]:
    """Zero labels shaped as the model's task has them: its ``forward`` reads the label although the loss is skipped."""
    keys = getattr(model, "label_keys", [])
    if not keys:
        return {}
    if getattr(model, "mode", None) == "multiclass":
        label = torch.zeros(rows, dtype=torch.long, device=device)
    else:
        label = torch.zeros(rows, model.get_output_size(), device=device)
    return {key: label for key in keys}


def forward_substituted(
    model: nn.Module, kwargs: dict, points: dict[str, torch.Tensor], ids: dict[str, torch.Tensor], rows: int, device
) -> torch.Tensor:
    """``model(**kwargs)["logit"]`` with the embedding of each key of ``points`` replaced by ``points[key]``.

    ``ids[key]`` are the token ids in ``kwargs`` that ``points[key]`` stands for; ``rows`` is the
    batch size of ``kwargs``. Without ``points`` this is the model's plain forward (the raw-input path).

    Raises:
        TypeError: the model never embedded some key of ``points`` through its embedding layer.
    """
    substitute = _substituted(embedding_layer(model), points, ids) if points else nullcontext(set())
    with _logits_only(model), substitute as done:
        logits = model(**kwargs, **placeholder_labels(model, rows, device))["logit"]
    missing = sorted(points.keys() - done)
    if missing:
        raise TypeError(
            f"{type(model).__name__}.forward never passed feature(s) {missing} through its embedding layer "
            f"{type(embedding_layer(model)).__name__}, so their embeddings cannot be substituted"
        )
    return logits
