"""Judging explanations: faithfulness metrics and sanity checks (:mod:`.metrics`), the perturbations
they use (:mod:`.perturbation`) and one patient's explanation (:mod:`.explanation`).

Example:
    >>> from ehrexplain.evaluation import area_under_curve
    >>> import torch
    >>> float(area_under_curve(torch.tensor([0.0, 1.0]), torch.tensor([[1.0], [0.0]]))[0])
    0.5
"""

from .explanation import PatientExplanation, explain_patient
from .metrics import (
    PERCENTAGES,
    RandomizationResult,
    area_under_curve,
    compare,
    comprehensiveness,
    deletion_curve,
    insertion_curve,
    method_agreement,
    randomization_check,
    randomized_copy,
    rank_correlation,
    signal_recovery,
    sufficiency,
)

__all__ = [
    "PatientExplanation", "explain_patient",
    "PERCENTAGES", "RandomizationResult", "area_under_curve", "compare", "comprehensiveness", "deletion_curve",
    "insertion_curve", "method_agreement", "randomization_check", "randomized_copy", "rank_correlation", "signal_recovery", "sufficiency",
]
