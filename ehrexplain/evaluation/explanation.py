"""One patient's explanation by one method, as plain numbers and code names.

This is the logic behind the views and widgets: pick a patient from a cohort,
run an interpreter, and line the scores up with readable codes (and with the
planted ground truth when the cohort knows it).

Example:
    >>> explanation = explain_patient(model, cohort, 3, "integrated_gradients", steps=32)
    >>> explanation.labels[:3], len(explanation.scores) == len(explanation.labels)
    (['conditions: M81.0', 'conditions: K21.9', 'conditions: H25.9'], True)
    >>> explanation.relative_delta < 0.1     # the scores add up to f(x) - f(baseline) within 10 %
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.batch import feature_value
from ..core.validation import check_vocabulary
from ..data.sources import as_source
from ..methods import make_interpreter, method_spec
from .perturbation import predict

#: Baselines a user can pick by name for the gradient methods.
BASELINES = ("unk", "padding")


@dataclass
class PatientExplanation:
    """Scores of one patient's codes, flattened over feature keys in model order.

    Attributes:
        method, index, target: what was explained.
        probability: the model's probability for ``target``.
        labels: one entry per real (non-padding) code, ``"key: code"``, with
            ``" (visit k)"`` for nested features.
        codes: the bare codes, aligned with ``labels``.
        scores: the attribution of each code.
        ground_truth: 1 where the code drives the planted label (``None`` if unknown).
        delta: completeness error for methods that have one (IG, DeepLift; ``None`` otherwise).
        signed: whether the scores carry a sign.
    """

    method: str
    index: int
    target: int
    probability: float
    labels: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ground_truth: np.ndarray | None = None
    delta: float | None = None
    signed: bool = False

    @property
    def relative_delta(self) -> float | None:
        """``|delta| / |f(x) - f(b)|``: the share of the explained gap the scores miss (``None`` without a delta)."""
        if self.delta is None:
            return None
        gap = float(np.sum(self.scores)) - self.delta  # delta = Σ scores - (f(x) - f(b))
        return abs(self.delta) / max(abs(gap), 1e-12)


def check_patient_index(cohort, index: int) -> None:
    """Raise ``IndexError`` with the valid range when ``index`` is not a patient of ``cohort`` (a source)."""
    n = len(cohort)
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"patient index must be an integer, got {index!r} ({type(index).__name__})")
    if not 0 <= index < n:
        raise IndexError(f"patient index {index} is out of range: the cohort has {n} patients (0..{n - 1})")


def named_baseline(batch: dict, model, name: str) -> dict[str, torch.Tensor] | None:
    """``"unk"``: the default UNK-token baseline (``None``); ``"padding"``: token id 0 everywhere."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    if name == "unk":
        return None
    processors = model.dataset.input_processors
    return {
        key: torch.zeros_like(feature_value(model, key, batch[key]))
        for key in model.feature_keys
        if processors[key].is_token()
    }


def explain_patient(model, cohort, index: int, method: str, target_class_idx=None, baseline: str = "unk", **options):
    """Explain patient ``index`` of ``cohort`` (anything :func:`~ehrexplain.data.as_source` takes) with ``method``.

    Options go where the method's registered schema says (constructor or
    ``attribute``); ``baseline`` names one of ``BASELINES`` for methods that use one.

    Raises:
        TypeError: ``cohort`` is not a source of patients; ``index`` is not an integer (``"3"``, ``3.0`` and
            ``True`` are refused).
        IndexError: ``index`` is not a patient of the cohort.
        ValueError: unknown method or baseline name, or the cohort's vocabulary is not the model's.
        TypeError: the model cannot support the method (e.g. Chefer on a forward-only model).
    """
    cohort = as_source(cohort)
    check_patient_index(cohort, index)
    check_vocabulary(model, getattr(cohort, "dataset", None))
    spec = method_spec(method)
    batch = cohort.batch([int(index)])
    interpreter = make_interpreter(method, model, **options)
    call = {"baseline": named_baseline(batch, model, baseline)} if spec.uses_baseline else {}
    if spec.has_delta:
        call["return_convergence_delta"] = True
    result = interpreter.attribute(**batch, target_class_idx=target_class_idx, **call)
    scores, delta = result if spec.has_delta else (result, None)
    target, probability = _target_and_probability(model, batch, target_class_idx)
    truth = cohort.ground_truth(batch) if cohort.ground_truth is not None else None
    explanation = PatientExplanation(method, int(index), target, probability, signed=spec.signed)
    explanation.delta = None if delta is None else float(delta[0])
    _fill_codes(explanation, model, cohort, batch, scores, truth)
    return explanation


def _target_and_probability(model, batch: dict, target_class_idx) -> tuple[int, float]:
    target = None if target_class_idx is None else torch.tensor([int(target_class_idx)])
    probability, target = predict(model, batch, target)
    return int(target[0]), float(probability[0])


def _fill_codes(explanation, model, cohort, batch, scores, truth) -> None:
    labels, codes, values, marks = [], [], [], []
    for key in model.feature_keys:
        ids = feature_value(model, key, batch[key])[0]
        if not model.dataset.input_processors[key].is_token():
            continue  # continuous features have no codes to show
        nested = ids.dim() == 2
        positions = (ids != 0).nonzero().tolist()
        decoded = cohort.decode(key, [int(ids[tuple(p)]) for p in positions])
        for position, code in zip(positions, decoded):
            labels.append(f"{key}: {cohort.code_name(code)}" + (f" (visit {position[0] + 1})" if nested else ""))
            codes.append(code)
            values.append(float(scores[key][0][tuple(position)]))
            if truth is not None:
                marks.append(float(truth[key][0][tuple(position)]))
    explanation.labels, explanation.codes = labels, codes
    explanation.scores = np.asarray(values)
    explanation.ground_truth = np.asarray(marks) if truth is not None else None
