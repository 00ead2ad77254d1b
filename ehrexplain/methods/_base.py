"""What every ehrexplain interpreter shares.

Interpreters subclass PyHealth's ``BaseInterpreter`` so they are accepted
wherever PyHealth takes an interpreter (its interpretability metrics and
ensembles). Unlike PyHealth's base class they do not switch the model to eval
mode for good at construction: each ``attribute`` call runs in eval mode and
restores the model's own mode afterwards.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from pyhealth.interpret.methods.base_interpreter import BaseInterpreter

TargetIndex = Optional[Union[int, torch.Tensor]]


class Interpreter(BaseInterpreter):
    """Base class: keeps the model untouched until ``attribute`` is called.

    Example:
        >>> # interpreter = AttentionRollout(model); interpreter(**batch)  # same as .attribute
    """

    #: True when scores carry a sign (IG, DeepLift); False for non-negative
    #: relevance (rollout, Chefer). Evaluation metrics rank by it.
    signed_scores: bool = False

    def __init__(self, model: torch.nn.Module):
        # BaseInterpreter.__init__ would call model.eval() and leave it so.
        self.model = model

    def _resolve_target_indices(self, logits: torch.Tensor, target_class_idx: TargetIndex) -> torch.Tensor:
        """``[batch]`` class indices to explain, checked against the number of classes.

        Binary models (one logit) always explain index 0. ``target_class_idx`` may
        be an int or a ``[batch]`` tensor; ``None`` means the predicted class.
        """
        batch, n_classes = logits.shape[0], logits.shape[-1]
        if n_classes == 1:
            return torch.zeros(batch, dtype=torch.long, device=logits.device)
        if target_class_idx is None:
            return logits.argmax(dim=-1)
        target = torch.as_tensor(target_class_idx, device=logits.device).long().reshape(-1)
        if target.numel() == 1:
            target = target.expand(batch)
        if target.numel() != batch:
            raise ValueError(f"target_class_idx has {target.numel()} entries but the batch has {batch} samples")
        if (target < 0).any() or (target >= n_classes).any():
            raise ValueError(
                f"target_class_idx {target_class_idx} is out of range: the model has {n_classes} classes "
                f"(valid indices 0..{n_classes - 1})"
            )
        return target
