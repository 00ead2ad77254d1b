"""The split attention interface for PyHealth models with Mamba blocks: ``JambaEHR`` and ``EHRMamba``.

Each feature's stack is read in layer order: a ``TransformerBlock`` gives its
softmax map (and gradient), a ``MambaBlock`` its hidden attention
(:mod:`.mamba_mixing`), so rollout and Chefer see every layer that moves
information between positions. Both models predict from each patient's last
valid position (``get_last_visit``), whose row :meth:`get_relevance_tensor` reads.

Example:
    >>> import pyhealth.models
    >>> jamba = pyhealth.models.JambaEHR(dataset=model.dataset, embedding_dim=8, num_transformer_layers=1, num_mamba_layers=1)
    >>> view = MambaStackAdapter(jamba, find_mamba_stacks(jamba))
    >>> view.set_attention_hooks(True, capture_gradients=False)
    >>> with torch.no_grad():
    ...     _ = jamba(**batch)
    >>> view.set_attention_hooks(False)
    >>> [attention.shape for attention, _ in view.get_attention_layers()["drugs"]]   # mamba, then transformer
    [torch.Size([8, 6, 6]), torch.Size([8, 4, 6, 6])]
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .batch import padding_mask
from .interfaces import AttentionLayers, GradientInterpretable
from .model_state import submodules
from .mamba_mixing import gradient_weighted_map, rollout_map


def _block_types() -> tuple[type, type, type]:
    from pyhealth.models.ehrmamba import MambaBlock
    from pyhealth.models.transformer import Attention, TransformerBlock

    return MambaBlock, TransformerBlock, Attention


def find_mamba_stacks(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Per feature key, the ``TransformerBlock``/``MambaBlock`` layers in order; ``{}`` without a ``MambaBlock``.

    Example:
        >>> find_mamba_stacks(model)   # the demo's Transformer has no Mamba block
        {}
    """
    keys = list(getattr(model, "feature_keys", []) or [])
    mamba, transformer, _ = _block_types()
    for module in model.children() if keys and isinstance(model, nn.Module) else ():
        if isinstance(module, nn.ModuleDict) and set(module.keys()) == set(keys):
            stacks = {}
            for key in keys:
                stacks[key] = [m for m in submodules(module[key]) if isinstance(m, (mamba, transformer))]
                if not any(isinstance(m, mamba) for m in stacks[key]):
                    break  # a model without Mamba blocks (the common case) is told after one key
            else:
                return stacks
    return {}


class _Record:
    """What one layer's hooks saw in the last forward (and backward) pass."""

    def __init__(self, block: nn.Module):
        self.block, self.map, self.grad, self.u, self.gate = block, None, None, None, None


class MambaStackAdapter(GradientInterpretable):
    """Rollout and Chefer inputs for a model whose per-feature stacks hold Mamba (and attention) blocks.

    A Mamba layer's entry is ``(map, weight)``: ``map`` the row-stochastic
    :func:`~.mamba_mixing.rollout_map`, ``weight`` (gradient mode, after
    ``backward()``) the gradient-weighted map divided by ``map``, so that
    Chefer's ``max(weight ⊙ map, 0)`` is :func:`~.mamba_mixing.gradient_weighted_map`.
    The model is never modified: hooks live only while capture is on.

    Example:
        >>> import pyhealth.models
        >>> jamba = pyhealth.models.JambaEHR(dataset=model.dataset, embedding_dim=8)
        >>> view = MambaStackAdapter(jamba, find_mamba_stacks(jamba))
        >>> view.get_relevance_tensor({"drugs": torch.eye(6).expand(8, 6, 6)}, **batch)["drugs"].sum(-1).tolist()
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """

    def __init__(self, model: nn.Module, stacks: dict[str, list[nn.Module]]):
        self.model, self._stacks = model, stacks
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._records: dict[str, list[_Record]] = {}

    def set_attention_hooks(self, enabled: bool, capture_gradients: bool = True) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if not enabled:
            return
        self._stacks = find_mamba_stacks(self.model) or self._stacks
        self._records = {key: [_Record(block) for block in blocks] for key, blocks in self._stacks.items()}
        mamba, _, attention = _block_types()
        for record in (r for records in self._records.values() for r in records):
            if isinstance(record.block, mamba):
                self._hook(record.block.in_proj, partial(self._store_gate, record))
                self._hook(record.block.conv1d, partial(self._store_u, record))
                if capture_gradients:
                    self._hook(record.block.out_proj, partial(self._store_grad_at_ssm, record))
            else:
                helper = next(m for m in record.block.modules() if isinstance(m, attention))
                self._hook(helper, partial(self._store_map, record, capture_gradients))

    def _hook(self, module: nn.Module, hook) -> None:
        self._handles.append(module.register_forward_hook(hook))

    @staticmethod
    def _store_map(record, capture_gradients, module, args, output) -> None:
        record.map, record.grad = output[1].detach(), None
        if capture_gradients and output[1].requires_grad:
            output[1].register_hook(lambda grad: setattr(record, "grad", grad.detach()))

    @staticmethod
    def _store_gate(record, module, args, output) -> None:
        record.gate, record.grad = torch.nn.functional.silu(output.chunk(2, dim=-1)[1]).detach(), None

    @staticmethod
    def _store_u(record, module, args, output) -> None:
        length = args[0].shape[-1]
        record.u = torch.nn.functional.silu(output[:, :, :length]).permute(0, 2, 1).detach()

    @staticmethod
    def _store_grad_at_ssm(record, module, args, output) -> None:
        if args[0].requires_grad:  # out_proj reads ssm_output * silu(gate)
            args[0].register_hook(lambda grad: setattr(record, "grad", grad.detach() * record.gate))

    def release_captured(self) -> None:
        """Forget what the hooks captured (called at the end of every explanation)."""
        self._records = {}

    def get_attention_layers(self) -> AttentionLayers:
        if not self._records:
            raise RuntimeError("No attention captured: call set_attention_hooks(True) and run a forward pass first.")
        return {key: [self._entry(record) for record in records] for key, records in self._records.items()}

    @staticmethod
    def _entry(record: _Record) -> tuple[torch.Tensor, torch.Tensor | None]:
        if record.u is None:
            return record.map, record.grad
        batch, length = record.u.shape[:2]
        attention = rollout_map(record.block, length).to(record.u).expand(batch, length, length)
        if record.grad is None:
            return attention, None
        weighted = gradient_weighted_map(record.block, record.u, record.grad)
        return attention, torch.where(attention > 0, weighted / attention, torch.zeros_like(weighted))

    def get_relevance_tensor(self, R: dict[str, torch.Tensor], **data) -> dict[str, torch.Tensor]:
        """Per key, the row of each patient's last valid position (``get_last_visit``'s), ``[batch, seq]``."""
        rows = {}
        for key, r in R.items():
            mask = padding_mask(self.model, key, data[key]).to(r.device)
            last = (mask.reshape(r.shape[0], r.shape[1], -1).ne(0).any(-1).sum(-1) - 1).clamp(min=0)
            rows[key] = r[torch.arange(r.shape[0], device=r.device), last]
        return rows

    @property
    def hooks_active(self) -> bool:
        """Whether forward hooks are currently registered."""
        return bool(self._handles)
