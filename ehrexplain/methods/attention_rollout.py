"""Attention Rollout: how much attention flows from each input token to the output.

Paper:
    Samira Abnar and Willem Zuidema. "Quantifying Attention Flow in
    Transformers." ACL 2020. https://arxiv.org/abs/2005.00928

Algorithm (per feature key, one forward pass, no gradients):
    1. Capture each layer's attention ``A_l`` ``[batch, heads, seq, seq]``.
    2. Fuse heads (mean, max or min) and, optionally, drop the weakest
       weights of each row (``discard_ratio``) and renormalise the row.
    3. Add the residual path: ``Â_l = 0.5 * (A_l + I)``.
    4. Compose: ``rollout = Â_L @ ... @ Â_1``.
    5. Read the row of the position the model predicts from, then expand
       to the raw input shape (a visit's score is repeated over its codes).

Invariant: every ``Â_l`` is row-stochastic, so their product is too; the
per-token scores of step 5 form a distribution (they sum to 1).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..core.batch import check_feature_keys, expand_to_inputs
from ..core.capture import as_attention_interpretable, capturing_attention
from ..core.model_state import evaluation_mode
from ..core.validation import Option
from ._base import Interpreter, TargetIndex, attention_support, finite_attention_maps, rows_read
from .registry import register_method

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(attn: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """``[batch, heads, seq, seq]`` to ``[batch, seq, seq]``; 3-D input is returned as is.

    Max and min fusion do not keep rows summing to 1; :func:`rollout_matrix`
    renormalises them.

    Example:
        >>> a = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # 2 heads, 1 x 2
        >>> fuse_heads(a, "max")
        tensor([[[1., 1.]]])
    """
    if attn.dim() == 3:
        return attn
    if head_fusion == "mean":
        return attn.mean(dim=1)
    if head_fusion == "max":
        return attn.amax(dim=1)
    if head_fusion == "min":
        return attn.amin(dim=1)
    raise ValueError(f"unknown head_fusion {head_fusion!r}; choose one of {HEAD_FUSIONS}")


def discard_lowest(attn: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    """Zero the ``floor(discard_ratio * n)`` smallest of the ``n`` non-zero weights of every row.

    Weights that are already zero (masked keys such as padding) are not counted,
    so a patient's result does not depend on how much padding its batch added.
    The largest weight of a row always survives because ``discard_ratio < 1``.

    Example:
        >>> discard_lowest(torch.tensor([[[0.1, 0.6, 0.3, 0.0]]]), 0.34)
        tensor([[[0.0000, 0.6000, 0.3000, 0.0000]]])
    """
    n_zero = (attn <= 0).sum(dim=-1, keepdim=True)
    n_drop = (discard_ratio * (attn.shape[-1] - n_zero)).floor().long()
    if not n_drop.any():
        return attn
    rank = attn.argsort(dim=-1, stable=True).argsort(dim=-1)  # 0 = smallest; zeros rank first
    return attn.masked_fill((rank >= n_zero) & (rank < n_zero + n_drop), 0.0)


def rollout_matrix(
    attentions: Sequence[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> torch.Tensor:
    """Compose a stack of attention maps into one ``[batch, seq, seq]`` rollout matrix.

    Args:
        attentions: per layer, input first, ``[batch, heads, seq, seq]`` or
            ``[batch, seq, seq]`` attention weights whose rows sum to 1.
        head_fusion: ``"mean"`` (canonical), ``"max"`` or ``"min"``.
        discard_ratio: fraction of each row's weights to drop, in ``[0, 1)``.

    Example:
        >>> eye = torch.eye(3).expand(1, 2, 3, 3)
        >>> torch.equal(rollout_matrix([eye, eye]), torch.eye(3)[None])
        True
    """
    if not attentions:
        raise ValueError("rollout needs at least one attention layer")
    rollout = None
    for attn in attentions:
        fused = _fused(attn, head_fusion, discard_ratio)
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        step = 0.5 * (fused + eye)
        rollout = step if rollout is None else step @ rollout
    return rollout


def rollout_rows(attentions: Sequence[torch.Tensor], rows: torch.Tensor, head_fusion: str = "mean",
                 discard_ratio: float = 0.0) -> torch.Tensor:
    """Row ``rows[b]`` of patient ``b``'s :func:`rollout_matrix`, ``[batch, seq]``, in O(seq²) per layer.

    ``e_r Â_L ... Â_1`` is a vector times each matrix in turn, not a product of matrices.

    Example:
        >>> a = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
        >>> torch.equal(rollout_rows([a, a], torch.tensor([1])), rollout_matrix([a, a])[:, 1])
        True
    """
    if not attentions:
        raise ValueError("rollout needs at least one attention layer")
    fused = [_fused(attn, head_fusion, discard_ratio) for attn in attentions]
    row = torch.nn.functional.one_hot(rows, fused[0].shape[-1]).to(fused[0].dtype)[:, None]
    for step in reversed(fused):
        row = 0.5 * (row @ step + row)
    return row[:, 0]


def _fused(attn: torch.Tensor, head_fusion: str, discard_ratio: float) -> torch.Tensor:
    """One layer's ``[batch, seq, seq]`` weights: heads fused, the weakest dropped, rows summing to 1."""
    fused = fuse_heads(attn, head_fusion)
    if head_fusion != "mean" or discard_ratio > 0:
        fused = discard_lowest(fused, discard_ratio)
        fused = fused / fused.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(fused.dtype).tiny)
    return fused


@register_method(
    "rollout", label="Attention Rollout", signed=False, class_specific=False, uses_baseline=False, has_delta=False,
    needs_gradients=False, needs_attention=True, supports=attention_support(needs_gradients=False),
    options=(
        Option("head_fusion", str, "mean", "init", choices=HEAD_FUSIONS),
        Option("discard_ratio", float, 0.0, "init", bounds=(0, 1), interval="[)"),
    ),
)
class AttentionRollout(Interpreter):
    """Class-agnostic Attention Rollout, API-compatible with PyHealth's.

    Runs one forward pass under ``torch.no_grad()`` (also fine inside the
    caller's ``no_grad`` or ``inference_mode``) and builds no autograd graph.

    Args:
        model: a trained PyHealth ``Transformer``/``StageAttentionNet``/``JambaEHR``/``EHRMamba`` (adapted
            automatically) or any :class:`~ehrexplain.AttentionInterpretable` model.
        head_fusion: ``"mean"`` (default, the paper's choice), ``"max"`` or ``"min"``.
        discard_ratio: drop this fraction of the weakest weights in each
            attention row before composing, in ``[0, 1)``; 0 is the canonical method.

    Example:
        >>> from ehrexplain import AttentionRollout
        >>> scores = AttentionRollout(model)(**batch)
        >>> scores["conditions"].shape
        torch.Size([8, 11])
        >>> bool(torch.allclose(scores["conditions"].sum(-1), torch.ones(8)))  # 1 per patient for flat sequences
        True
        >>> bool((scores["conditions"][batch["conditions"] == 0] == 0).all())  # padding scores 0
        True
    """

    def __init__(self, model, head_fusion: str = "mean", discard_ratio: float = 0.0):
        self._view = as_attention_interpretable(model, method="AttentionRollout")
        super().__init__(model)
        self.head_fusion = head_fusion
        self.discard_ratio = discard_ratio

    def attention_maps(self, **data) -> dict[str, list[torch.Tensor]]:
        """Per feature key, each layer's ``[batch, heads, seq, seq]`` attention (input layer first).

        Raises ``ValueError`` naming the feature and samples when a map holds NaN or infinity.
        """
        check_feature_keys(self.model, data)
        with evaluation_mode(self.model, self._call.tree, backward=False), torch.no_grad():
            with capturing_attention(self._view, gradients=False):
                self.model(**data)
            return finite_attention_maps(self.model, self._view)

    def rollout_matrices(self, **data) -> dict[str, torch.Tensor]:
        """Per feature key, the full ``[batch, seq, seq]`` rollout matrix."""
        return {
            key: rollout_matrix(maps, self.head_fusion, self.discard_ratio)
            for key, maps in self.attention_maps(**data).items()
        }

    def attribute(self, target_class_idx: TargetIndex = None, **data) -> dict[str, torch.Tensor]:
        """Rollout relevance per input token, shaped like each feature's raw values.

        Args:
            target_class_idx: accepted for compatibility and ignored (rollout is
                class-agnostic).
            **data: a dataloader batch.

        Returns:
            ``{feature_key: scores}``; scores are non-negative and, for flat
            sequences, sum to 1 per patient.
        """
        maps = self.attention_maps(**data)
        with torch.no_grad():
            rows = rows_read(self._view, maps, data)
            if rows is None:
                matrices = {key: rollout_matrix(layers, self.head_fusion, self.discard_ratio) for key, layers in maps.items()}
                scores = self._view.get_relevance_tensor(matrices, **data)
            else:
                scores = {key: rollout_rows(layers, rows[key], self.head_fusion, self.discard_ratio)
                          for key, layers in maps.items()}  # fmt: skip
            return expand_to_inputs(self.model, scores, data)
