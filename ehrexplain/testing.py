"""Small models with answers known in closed form, for tests and notebook checks,
and a counter of Integrated Gradients' model passes, for tests and benchmarks.

They follow PyHealth's conventions (``feature_keys``, ``dataset.input_processors``,
``forward(**batch)`` returning ``{"logit": ...}``) so every interpreter accepts them.

Example:
    >>> import torch
    >>> toy = StaticAttentionModel([torch.eye(3).expand(1, 2, 3, 3)])
    >>> toy(codes=torch.tensor([[5, 6, 7]]))["logit"].shape
    torch.Size([1, 1])
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from .core.interfaces import AttentionInterpretable, GradientInterpretable


class TokenProcessor:
    """Stand-in for a PyHealth sequence processor: one ``value`` tensor of token ids."""

    def schema(self) -> tuple[str, ...]:
        return ("value",)

    def is_token(self) -> bool:
        return True


def toy_dataset(*keys: str) -> SimpleNamespace:
    """A dataset stand-in whose features are all token sequences."""
    return SimpleNamespace(input_processors={key: TokenProcessor() for key in keys})


class StaticAttentionModel(nn.Module, AttentionInterpretable):
    """Reports a fixed, hand-made attention stack for the feature ``codes``.

    Args:
        attentions: per layer ``[batch, heads, seq, seq]`` maps, input layer first.

    Example:
        >>> a = torch.full((1, 1, 2, 2), 0.5)
        >>> model = StaticAttentionModel([a, a])
        >>> model.set_attention_hooks(True); _ = model(codes=torch.ones(1, 2, dtype=torch.long))
        >>> len(model.get_attention_layers()["codes"])
        2
    """

    def __init__(self, attentions: list[torch.Tensor]):
        super().__init__()
        self.attentions = attentions
        self.feature_keys = ["codes"]
        self.dataset = toy_dataset("codes")
        self.bias = nn.Parameter(torch.zeros(1))
        self._capture = False
        self._captured: list[torch.Tensor] = []

    def forward(self, **data) -> dict[str, torch.Tensor]:
        if self._capture:
            self._captured = [attn.clone() for attn in self.attentions]
        return {"logit": self.bias.expand(data["codes"].shape[0], 1)}

    def set_attention_hooks(self, enabled: bool) -> None:
        self._capture = enabled

    def get_attention_layers(self):
        return {"codes": [(attn, None) for attn in self._captured]}

    def get_relevance_tensor(self, R, **data):
        return {key: r[:, 0] for key, r in R.items()}


class OneLayerAttentionToy(nn.Module, GradientInterpretable):
    """One attention layer whose Chefer relevance has a closed form.

    ``logit[:, c] = sum_j A[0, j] * V[j, c]`` with ``A = softmax(x Wq (x Wk)^T / sqrt(d))``
    and ``V = x Wv``. Hence ``d logit_c / d A[0, j] = V[j, c]`` and zero for other
    rows, so Chefer's relevance row is ``e_0 + max(A[0] * V[:, c], 0)``.

    Args:
        vocab_size, dim, n_classes: sizes; ``seed`` fixes the weights.

    Example:
        >>> toy = OneLayerAttentionToy()
        >>> toy(codes=torch.tensor([[1, 2, 3]]))["logit"].shape
        torch.Size([1, 3])
    """

    def __init__(self, vocab_size: int = 10, dim: int = 4, n_classes: int = 3, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.embedding = nn.Parameter(torch.randn(vocab_size, dim, generator=generator))
        self.w_q = nn.Parameter(torch.randn(dim, dim, generator=generator))
        self.w_k = nn.Parameter(torch.randn(dim, dim, generator=generator))
        self.w_v = nn.Parameter(torch.randn(dim, n_classes, generator=generator))
        self.feature_keys = ["codes"]
        self.dataset = toy_dataset("codes")
        self._capture, self._gradients = False, False
        self.attn = self.attn_grad = None

    def attention_and_values(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``A`` as ``[batch, 1, seq, seq]`` and ``V`` as ``[batch, seq, classes]``."""
        x = self.embedding[codes]
        scores = (x @ self.w_q) @ (x @ self.w_k).transpose(1, 2) / x.shape[-1] ** 0.5
        return scores.softmax(dim=-1).unsqueeze(1), x @ self.w_v

    def forward(self, **data) -> dict[str, torch.Tensor]:
        attn, values = self.attention_and_values(data["codes"])
        if self._capture:
            self.attn, self.attn_grad = attn.detach(), None
            if self._gradients and attn.requires_grad:
                attn.register_hook(self._save_grad)
        logit = (attn[:, 0, 0, :, None] * values).sum(dim=1)
        return {"logit": logit}

    def _save_grad(self, grad: torch.Tensor) -> None:
        self.attn_grad = grad.detach()

    def set_attention_hooks(self, enabled: bool, capture_gradients: bool = True) -> None:
        self._capture, self._gradients = enabled, capture_gradients

    def get_attention_layers(self):
        return {"codes": [(self.attn, self.attn_grad)]}

    def get_relevance_tensor(self, R, **data):
        return {key: r[:, 0] for key, r in R.items()}


class ContinuousProcessor:
    """Stand-in for a PyHealth tensor processor: one ``value`` tensor of raw numbers."""

    def schema(self) -> tuple[str, ...]:
        return ("value",)

    def is_token(self) -> bool:
        return False


class FunctionModel(nn.Module):
    """A model ``logit = function(x)`` on one continuous feature ``x`` of shape ``[batch, n]``.

    With a known ``function`` the attributions of gradient methods have closed
    forms; ``function`` may be an ``nn.Module`` (its activations are then
    visible to DeepLift) or any callable returning ``[batch]`` or ``[batch, classes]``.

    Example:
        >>> toy = FunctionModel(ReluDifference())
        >>> toy(x=torch.tensor([[3.0, 1.0]]))["logit"]
        tensor([[1.]], grad_fn=<UnsqueezeBackward0>)
    """

    def __init__(self, function):
        super().__init__()
        self.function = function
        self.feature_keys = ["x"]
        self.dataset = SimpleNamespace(input_processors={"x": ContinuousProcessor()})
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, **data) -> dict[str, torch.Tensor]:
        x = data["x"][0] if isinstance(data["x"], tuple) else data["x"]
        logit = self.function(x) + self.anchor
        return {"logit": logit if logit.dim() == 2 else logit[:, None]}


class ReluDifference(nn.Module):
    """``f(x) = ReLU(x1 - 1 - ReLU(x2))``, the DeepLIFT paper's style of toy.

    From baseline 0 at ``x = (3, 1)``: ``f(x) - f(0) = 1``; DeepLIFT-Rescale and
    Integrated Gradients both give ``(1.5, -0.5)``, while gradient × input gives
    ``(3, -1)``, which sums to 2 and breaks completeness.
    """

    def __init__(self):
        super().__init__()
        self.inner, self.outer = nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(x[:, 0] - 1 - self.inner(x[:, 1]))


class ForwardOnlyModel(nn.Module, AttentionInterpretable):
    """A trained PyHealth attention model that can show its attention but not its gradients.

    Stands for models that only implement :class:`~ehrexplain.AttentionInterpretable`
    (e.g. exported for inference): rollout works, Chefer and the gradient
    methods raise a ``TypeError`` that names what is missing.

    Example:
        >>> from ehrexplain import AttentionRollout, CheferRelevance
        >>> forward_only = ForwardOnlyModel(model)
        >>> AttentionRollout(forward_only)(**batch)["conditions"].shape   # fine
        torch.Size([8, 11])
        >>> CheferRelevance(forward_only)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: CheferRelevance needs attention gradients, but ForwardOnlyModel is only AttentionInterpretable ...
    """

    def __init__(self, model: nn.Module):
        from .core.capture import PyHealthAttentionAdapter

        super().__init__()
        self.inner = model
        self.feature_keys, self.dataset = model.feature_keys, model.dataset
        self._view = PyHealthAttentionAdapter(model)

    def forward(self, **data) -> dict[str, torch.Tensor]:
        return self.inner(**data)

    def get_output_size(self) -> int:
        return self.inner.get_output_size()

    def set_attention_hooks(self, enabled: bool) -> None:
        self._view.set_attention_hooks(enabled, capture_gradients=False)

    def get_attention_layers(self):
        return self._view.get_attention_layers()

    def get_relevance_tensor(self, R, **data):
        return self._view.get_relevance_tensor(R, **data)


def tolerance_passes():
    """Rows (path points) of each model pass ``IntegratedGradients(tolerance=...)`` makes inside the block.

    Reads the counter the tolerance engine keeps itself (``methods._ig_tolerance.PASSES``).

    Example:
        >>> from ehrexplain import IntegratedGradients
        >>> with tolerance_passes() as passes:
        ...     scores = IntegratedGradients(model).attribute(**batch, tolerance=1e-3)
        >>> len(passes) >= 1, all(rows > 0 for rows in passes)    # e.g. [136, 160]: two passes
        (True, True)
        >>> with tolerance_passes() as passes:
        ...     pass
        >>> passes   # none here
        []
    """
    from .methods._ig_tolerance import PASSES

    return PASSES.listen()
