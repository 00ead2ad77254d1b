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

        ``target_class_idx`` may be an int or a ``[batch]`` tensor; ``None`` means
        the predicted class. Binary models have one logit (the evidence for class
        1) and, as in PyHealth, explain it whichever of their two classes (0 or 1)
        is asked for; any other index is an error.
        """
        batch, n_classes = logits.shape[0], logits.shape[-1]
        if target_class_idx is None:
            return logits.argmax(dim=-1)  # a single logit gives 0 for every row
        target = torch.as_tensor(target_class_idx, device=logits.device).long().reshape(-1)
        if target.numel() == 1:
            target = target.expand(batch)
        if target.numel() != batch:
            raise ValueError(f"target_class_idx has {target.numel()} entries but the batch has {batch} samples")
        valid = 2 if n_classes == 1 else n_classes
        if (target < 0).any() or (target >= valid).any():
            kind = "binary (one logit, classes 0 and 1)" if n_classes == 1 else f"{n_classes}-class"
            raise ValueError(
                f"target_class_idx {target_class_idx} is out of range for this {kind} model "
                f"(valid indices 0..{valid - 1})"
            )
        return torch.zeros_like(target) if n_classes == 1 else target
