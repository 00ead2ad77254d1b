"""Attention capture for trained PyHealth models, through module forward hooks.

PyHealth's attention helper (``pyhealth.models.transformer.Attention``) returns
``(output, p_attn)``. A forward hook on it sees every attention map without
touching PyHealth's code, so a plain, already-trained ``Transformer`` or
``StageAttentionNet`` (e.g. loaded from a checkpoint) gets the split interface
with no retraining and no new instance. A gradient hook is added to a map only
when gradients are wanted and autograd is recording.

Example:
    >>> from ehrexplain.capture import as_attention_interpretable
    >>> view = as_attention_interpretable(model)   # the demo's trained pyhealth.models.Transformer, as it is
    >>> view.set_attention_hooks(True, capture_gradients=False)
    >>> with torch.no_grad():
    ...     _ = model(**batch)
    >>> view.set_attention_hooks(False)
    >>> sorted(view.get_attention_layers()), view is model   # maps per feature key; an adapter, the model untouched
    (['conditions', 'drugs', 'procedures'], False)
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Iterator

import torch
from torch import nn

from .batch import _schema, as_tuple, feature_value, padding_mask
from .interfaces import (
    AttentionInterpretable,
    AttentionLayers,
    GradientInterpretable,
    missing_attention_methods,
)
from .mamba_capture import MambaStackAdapter, find_mamba_stacks
from .model_state import submodules


def _pyhealth_attention_type() -> type:
    from pyhealth.models.transformer import Attention

    return Attention


def find_attention_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Per feature key, the attention helper modules of ``model`` in layer order.

    Looks for a ``ModuleDict`` keyed by the model's feature keys (``transformer``
    in PyHealth's Transformer, ``stagenet`` in StageAttentionNet) whose every
    entry holds one. Returns an empty dict when there is none.

    Example:
        >>> import torch
        >>> find_attention_modules(torch.nn.Linear(2, 2))
        {}
    """
    keys = list(getattr(model, "feature_keys", []) or [])
    if not keys or not isinstance(model, nn.Module):
        return {}
    attention_type = _pyhealth_attention_type()
    for candidates in (model.children, lambda: submodules(model)):  # PyHealth keeps its ModuleDict at the top
        for module in candidates():
            if isinstance(module, nn.ModuleDict) and set(module.keys()) == set(keys):
                found = {key: [m for m in submodules(module[key]) if isinstance(m, attention_type)] for key in keys}
                if all(found.values()):
                    return found
    return {}


class PyHealthAttentionAdapter(GradientInterpretable):
    """The split interface for a PyHealth model built from PyHealth attention blocks.

    The model itself is never modified: hooks live only between
    ``set_attention_hooks(True)`` and ``set_attention_hooks(False)``.

    Args:
        model: a PyHealth ``Transformer``, ``StageAttentionNet`` or any model
            whose per-feature ``ModuleDict`` holds PyHealth attention helpers
            and which implements ``get_relevance_tensor``.
        modules: its attention modules when already found (:func:`find_attention_modules`);
            they are found again whenever hooks are set, as the model may have changed.

    Example:
        >>> view = PyHealthAttentionAdapter(model)   # the demo's trained Transformer
        >>> view.set_attention_hooks(True, capture_gradients=False)
        >>> with torch.no_grad():
        ...     _ = model(**batch)
        >>> view.set_attention_hooks(False)
        >>> maps = view.get_attention_layers()
        >>> attention, gradient = maps["conditions"][0]   # layer 0: (map, gradient)
        >>> attention.shape, gradient, view.hooks_active   # [patients, heads, codes, codes]; no gradient asked for
        (torch.Size([8, 2, 11, 11]), None, False)
        >>> bool(torch.allclose(attention.sum(-1), torch.ones(1)))   # softmax rows
        True
    """

    def __init__(self, model: nn.Module, modules: dict[str, list[nn.Module]] | None = None):
        if not (modules or find_attention_modules(model)):  # listed again when hooks are set: modules may be replaced
            raise TypeError(
                f"{type(model).__name__} has no PyHealth attention modules "
                "(pyhealth.models.transformer.Attention) under a ModuleDict keyed by its feature keys."
            )
        if not callable(getattr(model, "get_relevance_tensor", None)):
            raise TypeError(
                f"{type(model).__name__} has attention modules but no get_relevance_tensor(R, **data), "
                "so it is unknown which row of the relevance matrix it predicts from."
            )
        self.model = model
        self._modules: dict[str, list[nn.Module]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._maps: dict[str, list] = {}
        self._grads: dict[str, list] = {}
        self._graph_maps: list[torch.Tensor] = []

    def set_attention_hooks(self, enabled: bool, capture_gradients: bool = True) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if not enabled:
            return
        self._modules = find_attention_modules(self.model)  # modules may have been replaced since
        if not self._modules:
            raise TypeError(
                f"{type(self.model).__name__} no longer has PyHealth attention modules under a ModuleDict keyed "
                "by its feature keys (were they replaced after the interpreter was built?)"
            )
        self._maps = {key: [None] * len(mods) for key, mods in self._modules.items()}
        self._grads = {key: [None] * len(mods) for key, mods in self._modules.items()}
        self._graph_maps: list[torch.Tensor] = []
        for key, mods in self._modules.items():
            for layer, module in enumerate(mods):
                hook = partial(self._store_map, key, layer, capture_gradients)
                self._handles.append(module.register_forward_hook(hook))

    def release_captured(self) -> None:
        """Forget the captured maps and gradients (called at the end of every explanation)."""
        self._maps, self._grads, self._graph_maps = {}, {}, []

    def captured_maps(self) -> list[torch.Tensor]:
        """The attention maps of the last forward as autograd saw them (hooked for their gradient).

        A backward with respect to these alone fills every layer's gradient.
        """
        return list(self._graph_maps)

    def _store_map(self, key, layer, capture_gradients, module, args, output) -> None:
        attn = output[1]
        self._maps[key][layer] = attn.detach()
        self._grads[key][layer] = None
        if capture_gradients and attn.requires_grad:
            attn.register_hook(partial(self._store_grad, key, layer))
            self._graph_maps.append(attn)

    def _store_grad(self, key: str, layer: int, grad: torch.Tensor) -> None:
        self._grads[key][layer] = grad.detach()

    def get_attention_layers(self) -> AttentionLayers:
        if not self._maps:
            raise RuntimeError("No attention captured: call set_attention_hooks(True) and run a forward pass first.")
        return {key: list(zip(self._maps[key], self._grads[key])) for key in self._modules}

    def get_relevance_tensor(self, R: dict[str, torch.Tensor], **data) -> dict[str, torch.Tensor]:
        return self.model.get_relevance_tensor(R, **_flat_token_masks(self.model, data))

    def relevance_rows(self, sizes: dict[str, tuple[int, int]], **data) -> dict[str, torch.Tensor] | None:
        """Per feature key, the ``[batch]`` row of each relevance matrix that :meth:`get_relevance_tensor` reads.

        ``sizes`` maps each key to ``(batch, positions)``. The model's readout is asked about
        matrices whose entry ``(i, j)`` is ``i``, then ``j``, then ``i²`` (views, no memory): reading
        row ``r`` of each patient gives ``r``, ``j`` and ``r²``. Anything else (a mix of rows, a
        column) gives ``None``, and the caller composes full matrices.
        """
        float64 = torch.float64

        def probe(make):
            return self.get_relevance_tensor(
                {key: make(torch.arange(n, dtype=float64)).expand(b, n, n) for key, (b, n) in sizes.items()}, **data
            )

        rows = probe(lambda i: i[:, None])
        cols = probe(lambda j: j[None, :])
        squares = probe(lambda i: (i * i)[:, None])
        found = {}
        for key, (b, n) in sizes.items():
            row, positions = rows.get(key), torch.arange(n, dtype=float64)
            if row is None or row.shape != (b, n) or not torch.equal(cols[key], positions.expand(b, n)):
                return None
            first = row[:, :1]
            if not (torch.equal(row, first.expand(b, n)) and torch.equal(squares[key], (first * first).expand(b, n))):
                return None
            found[key] = first.squeeze(1).long()
        return found

    @property
    def hooks_active(self) -> bool:
        """Whether forward hooks are currently registered."""
        return bool(self._handles)


def _flat_token_masks(model: nn.Module, data: dict) -> dict:
    """``data`` with a padding mask appended to each flat (``[batch, length]``) token feature that has none.

    PyHealth 2.1's ``StageAttentionNet.get_relevance_tensor`` takes such a trailing mask; without one it
    derives the mask by summing the values over their last dimension, which for flat token ids is the
    sequence itself (an ``IndexError``). The mask is :func:`~.batch.padding_mask`, the model's own.
    """
    processors = getattr(getattr(model, "dataset", None), "input_processors", {})
    out = dict(data)
    for key, feature in data.items():
        if key not in processors or not callable(getattr(processors[key], "is_token", None)) or not processors[key].is_token():
            continue
        schema, parts = _schema(model, key), as_tuple(feature)
        if "mask" in schema or "value" not in schema or len(parts) != len(schema):
            continue
        if feature_value(model, key, parts).dim() == 2:
            out[key] = parts + (padding_mask(model, key, parts),)
    return out


def as_attention_interpretable(
    model: object, needs_gradients: bool = False, method: str = "This method"
) -> AttentionInterpretable:
    """Return ``model`` itself if it implements the interface, else a PyHealth adapter.

    Args:
        model: the model to explain.
        needs_gradients: require :class:`GradientInterpretable`.
        method: name used in error messages.

    Raises:
        TypeError: naming the missing methods or capability.

    Example:
        >>> import torch
        >>> as_attention_interpretable(torch.nn.Linear(2, 2), method="AttentionRollout")
        Traceback (most recent call last):
        ...
        TypeError: AttentionRollout needs attention maps, but Linear ...
    """
    if isinstance(model, AttentionInterpretable):
        if needs_gradients and not isinstance(model, GradientInterpretable):
            raise TypeError(
                f"{method} needs attention gradients, but {type(model).__name__} is only "
                "AttentionInterpretable (forward capture). Implement GradientInterpretable: "
                "set_attention_hooks(enabled, capture_gradients=True) must also store the "
                "gradient of every attention map after backward()."
            )
        return model
    stacks = find_mamba_stacks(model)  # JambaEHR, EHRMamba: Mamba blocks mix positions too
    if stacks:
        return MambaStackAdapter(model, stacks)
    modules = find_attention_modules(model)
    if modules:
        return PyHealthAttentionAdapter(model, modules)
    missing = missing_attention_methods(model)
    raise TypeError(
        f"{method} needs attention maps, but {type(model).__name__} neither uses PyHealth "
        "attention modules nor implements ehrexplain.AttentionInterpretable"
        + (f" (missing: {', '.join(missing)})." if missing else " (subclass it or GradientInterpretable).")
    )


@contextmanager
def capturing_attention(view: AttentionInterpretable, gradients: bool) -> Iterator[AttentionInterpretable]:
    """Enable capture on ``view`` for the duration of a forward pass, then disable it.

    Gradient capture is requested only from :class:`GradientInterpretable` models.

    Example:
        >>> view = as_attention_interpretable(model)
        >>> with capturing_attention(view, gradients=False):
        ...     _ = model(**batch)
        >>> view.hooks_active, [attention.shape for attention, gradient in view.get_attention_layers()["drugs"]]
        (False, [torch.Size([8, 2, 6, 6]), torch.Size([8, 2, 6, 6])])
    """
    if isinstance(view, GradientInterpretable):
        view.set_attention_hooks(True, capture_gradients=gradients)
    else:
        view.set_attention_hooks(True)
    try:
        yield view
    finally:
        view.set_attention_hooks(False)
