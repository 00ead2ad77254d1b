"""Chefer relevance: attention weighted by its gradient, propagated through layers.

Paper:
    Hila Chefer, Shir Gur and Lior Wolf. "Generic Attention-model
    Explainability for Interpreting Bi-Modal and Encoder-Decoder
    Transformers." ICCV 2021. https://arxiv.org/abs/2103.15679

Algorithm (per feature key):
    1. Forward pass capturing each layer's attention ``A_l``.
    2. Backward from the target class logit; capture ``∇A_l``.
    3. Gradient-weighted attention: ``Ā_l = mean_heads(max(∇A_l ⊙ A_l, 0))``.
    4. Start from ``R = I`` and update ``R ← R + Ā_l @ R`` for each layer.
    5. Read the row of the position the model predicts from, expand to the
       raw input shape.

Unlike rollout, the result depends on the class explained: the gradient of a
different logit weights the same attention differently.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..core.batch import check_feature_keys, expand_to_inputs
from ..core.capture import as_attention_interpretable, capturing_attention
from ..core.model_checks import check_finite_prediction
from ..core.model_state import evaluation_mode, gradients_enabled, parameters_require_grad
from ._base import Interpreter, TargetIndex, attention_support, check_finite_per_feature, finite_attention_maps, rows_read
from .registry import register_method


def gradient_weighted_attention(attn: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``mean over heads of max(grad * attn, 0)``; 3-D input has no head axis.

    Example:
        >>> a = torch.tensor([[[[0.5, 0.5]]]]); g = torch.tensor([[[[2.0, -2.0]]]])
        >>> gradient_weighted_attention(a, g)
        tensor([[[1., 0.]]])
    """
    weighted = (grad * attn).clamp(min=0)
    return weighted.mean(dim=1) if weighted.dim() == 4 else weighted


def relevance_matrix(layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Chefer's ``R = I; R += Ā_l @ R`` over ``(attn, grad)`` pairs, input layer first.

    Example:
        >>> a = torch.full((1, 1, 2, 2), 0.5); g = torch.ones(1, 1, 2, 2)
        >>> relevance_matrix([(a, g)])
        tensor([[[1.5000, 0.5000],
                 [0.5000, 1.5000]]])
    """
    R = None
    for cam in _weighted_layers(layers):
        if R is None:
            R = torch.eye(cam.shape[-1], dtype=cam.dtype, device=cam.device).expand_as(cam)
        R = R + cam @ R
    return R


def relevance_rows(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: torch.Tensor) -> torch.Tensor:
    """Row ``rows[b]`` of patient ``b``'s :func:`relevance_matrix`, ``[batch, seq]``, in O(seq²) per layer.

    ``e_r (I + Ā_L) ... (I + Ā_1)``: a vector times each matrix in turn.

    Example:
        >>> a = torch.tensor([[[[0.2, 0.8], [0.6, 0.4]]]]); g = torch.ones(1, 1, 2, 2)
        >>> torch.allclose(relevance_rows([(a, g), (a, g)], torch.tensor([1])), relevance_matrix([(a, g), (a, g)])[:, 1])
        True
    """
    cams = _weighted_layers(layers)
    row = torch.nn.functional.one_hot(rows, cams[0].shape[-1]).to(cams[0].dtype)[:, None]
    for cam in reversed(cams):
        row = row + row @ cam
    return row[:, 0]


def _weighted_layers(layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Each layer's ``Ā_l``, input layer first; refuses a layer without gradient and an empty stack."""
    cams = []
    for layer, (attn, grad) in enumerate(layers):
        if grad is None:
            raise RuntimeError(
                f"no attention gradient was captured for layer {layer}; "
                "the model's set_attention_hooks(True, capture_gradients=True) must store it"
            )
        cams.append(gradient_weighted_attention(attn, grad))
    if not cams:
        raise ValueError("Chefer relevance needs at least one attention layer")
    return cams


def backward_stop(model: nn.Module) -> list[torch.Tensor] | None:
    """Where the backward pass may stop: the parameters of a PyHealth model's ``embedding_model``.

    Every attention map depends on the embeddings, so a backward that ends there still
    reaches (and hooks) every map, but skips the weight gradients of every later layer,
    about half of a full backward's work. ``None`` (every leaf) for other models.

    Example:
        >>> backward_stop(torch.nn.Linear(2, 1)) is None
        True
    """
    embedding = getattr(model, "embedding_model", None)
    params = [p for p in embedding.parameters() if p.requires_grad] if isinstance(embedding, nn.Module) else []
    return params or None


def backpropagate(objective: torch.Tensor, view, model: nn.Module) -> None:
    """Run the backward that fills the view's attention gradients, and no more of it than needed.

    Where the view hands over the attention maps it captured (``captured_maps``), the
    gradient is taken with respect to those maps only: nothing below the first layer's
    map is differentiated. Otherwise the backward stops at :func:`backward_stop`.

    Example:
        >>> w = torch.ones(2, requires_grad=True)
        >>> backpropagate((w * 3).sum(), view=None, model=torch.nn.Linear(2, 1)); w.grad
        tensor([3., 3.])
    """
    captured = getattr(view, "captured_maps", None)
    maps = [m for m in captured() if m.requires_grad] if callable(captured) else []
    if maps:
        torch.autograd.grad(objective, maps, allow_unused=True)  # the maps' hooks store their gradients
    else:
        objective.backward(inputs=backward_stop(model))


@register_method(
    "chefer", label="Chefer relevance", signed=False, class_specific=True, uses_baseline=False, has_delta=False,
    needs_gradients=True, needs_attention=True, supports=attention_support(needs_gradients=True),
)
class CheferRelevance(Interpreter):
    """Class-specific, gradient-weighted attention relevance, API-compatible with PyHealth's.

    Works for any batch size and also when called inside ``torch.no_grad()``
    (gradients are enabled internally). Parameter ``.grad`` and the model's
    train/eval mode are restored afterwards.

    Args:
        model: a trained PyHealth ``Transformer``/``StageAttentionNet``/``JambaEHR``/``EHRMamba`` (adapted
            automatically) or any :class:`~ehrexplain.GradientInterpretable` model.

    Raises:
        TypeError: if the model can only provide forward attention maps.
        ValueError: naming the feature and samples whose attention maps, prediction or relevance
            hold NaN or infinity (e.g. inputs the model overflows on).

    Example:
        >>> from ehrexplain import CheferRelevance
        >>> relevance = CheferRelevance(model).attribute(target_class_idx=1, **batch)
        >>> relevance["conditions"].shape, bool((relevance["conditions"] >= 0).all())   # non-negative relevance
        (torch.Size([8, 11]), True)
        >>> bool((relevance["conditions"][batch["conditions"] == 0] == 0).all())         # padding scores 0
        True
    """

    def __init__(self, model):
        self._view = as_attention_interpretable(model, needs_gradients=True, method="CheferRelevance")
        super().__init__(model)

    def attribute(self, target_class_idx: TargetIndex = None, **data) -> dict[str, torch.Tensor]:
        """Relevance of each input token for ``target_class_idx`` (default: predicted class).

        Returns:
            ``{feature_key: scores}`` shaped like each feature's raw values.
        """
        check_feature_keys(self.model, data)
        tree = self._call.tree
        with evaluation_mode(self.model, tree), gradients_enabled(), parameters_require_grad(self.model, True, tree):
            with capturing_attention(self._view, gradients=True):
                logits = self.model(**data)["logit"]
            finite_attention_maps(self.model, self._view)
            check_finite_prediction(self.model, logits)
            targets = self._targets(logits)
            backpropagate(logits.gather(1, targets[:, None]).sum(), self._view, self.model)
            layers = self._view.get_attention_layers()
            rows = rows_read(self._view, {key: [attn for attn, _ in pairs] for key, pairs in layers.items()}, data)
            if rows is None:
                relevance = {key: relevance_matrix(pairs) for key, pairs in layers.items()}
            else:
                relevance = {key: relevance_rows(pairs, rows[key]) for key, pairs in layers.items()}
            check_finite_per_feature(self.model, "relevance (attention times its gradient)",
                                     {key: [R] for key, R in relevance.items()})
            scores = relevance if rows is not None else self._view.get_relevance_tensor(relevance, **data)
        return expand_to_inputs(self.model, {k: v.detach() for k, v in scores.items()}, data)

    def get_relevance_matrix(self, **data) -> dict[str, torch.Tensor]:
        """Alias of :meth:`attribute`, kept because PyHealth offers it."""
        return self.attribute(**data)
