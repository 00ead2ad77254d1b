"""The split attention interface: forward capture, and gradient capture on top.

Gradient-free methods (Attention Rollout) need only the attention maps of a
forward pass; gradient-weighted methods (Chefer) also need the gradient of the
target logit with respect to every attention map. Splitting the contract in
two lets a gradient-free method run under ``torch.no_grad()`` and lets a model
that cannot provide gradients still be explained by rollout.

Example:
    >>> import torch
    >>> from ehrexplain.interfaces import AttentionInterpretable
    >>> class Fixed(AttentionInterpretable):
    ...     def set_attention_hooks(self, enabled): pass
    ...     def get_attention_layers(self):
    ...         return {"codes": [(torch.eye(2)[None, None], None)]}
    ...     def get_relevance_tensor(self, R, **data):
    ...         return {k: r[:, 0] for k, r in R.items()}
    >>> isinstance(Fixed(), AttentionInterpretable)
    True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import torch

AttentionLayers = dict[str, list[tuple[torch.Tensor, Optional[torch.Tensor]]]]

ATTENTION_METHODS = ("set_attention_hooks", "get_attention_layers", "get_relevance_tensor")


class AttentionInterpretable(ABC):
    """A model whose attention maps can be read after a forward pass.

    No backward hook is involved, so capture works under ``torch.no_grad()``
    and ``torch.inference_mode()``.
    """

    @abstractmethod
    def set_attention_hooks(self, enabled: bool) -> None:
        """Start (``True``) or stop (``False``) storing attention maps."""

    @abstractmethod
    def get_attention_layers(self) -> AttentionLayers:
        """Per feature key, ``(attn_map, attn_grad)`` for each layer, input first.

        ``attn_map`` is ``[batch, heads, seq, seq]`` (or ``[batch, seq, seq]``);
        ``attn_grad`` has the same shape, or is ``None`` when gradients were
        not captured.
        """

    @abstractmethod
    def get_relevance_tensor(self, R: dict[str, torch.Tensor], **data) -> dict[str, torch.Tensor]:
        """Reduce ``[batch, seq, seq]`` relevance matrices to ``[batch, seq]``.

        The model picks the row of the position it classifies from (the first
        token for PyHealth's Transformer, the last visit for StageAttentionNet).
        """


class GradientInterpretable(AttentionInterpretable):
    """An :class:`AttentionInterpretable` model that can also store attention gradients.

    ``set_attention_hooks(True)`` captures maps and gradients;
    ``set_attention_hooks(True, capture_gradients=False)`` selects the
    forward-only mode of the parent interface.
    """

    @abstractmethod
    def set_attention_hooks(self, enabled: bool, capture_gradients: bool = True) -> None:
        """Start or stop capture; gradients are stored after ``backward()``."""


#: Backwards-compatible name used by PyHealth before the split.
CheferInterpretable = GradientInterpretable


def missing_attention_methods(model: object) -> list[str]:
    """Names of the attention-readout methods ``model`` lacks.

    Example:
        >>> missing_attention_methods(object())
        ['set_attention_hooks', 'get_attention_layers', 'get_relevance_tensor']
    """
    return [name for name in ATTENTION_METHODS if not callable(getattr(model, name, None))]
