"""Patients to explain, from whatever PyHealth gives: one adapter for every entry point.

A :class:`PatientSource` numbers the samples of a PyHealth ``SampleDataset`` and gives what the views,
metrics and cohort tools read: ``len(source)``, ``source.batch(indices)`` (exactly what a PyHealth
dataloader yields), ``source.decode(key, ids)``, readable code names, and ground truth when it is known
(the synthetic cohorts' planted rule). :func:`as_source` builds one from a ``SampleDataset``, a
non-shuffling dataloader over one, a base dataset plus a task, or a synthetic ``Cohort``.

Example:
    >>> from ehrexplain.data import as_source, make_cohort
    >>> source = as_source(make_cohort(n_patients=20, seed=0))
    >>> len(source), sorted(source.batch([0, 1]))[:2], source.ground_truth is not None
    (20, ['conditions', 'drugs'], True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..core.batch import inverse_vocab
from .synthetic import Cohort

ACCEPTED = ("a PyHealth SampleDataset (dataset.set_task(task)), a non-shuffling PyHealth DataLoader over one, "
            "a PyHealth base dataset with task=..., an ehrexplain Cohort or a PatientSource")


@dataclass
class PatientSource:
    """Numbered samples of a PyHealth ``SampleDataset``, with optional code names and ground truth.

    Attributes:
        dataset: the ``SampleDataset`` (what a model was built on).
        code_names: ``{code: readable name}`` (e.g. :func:`~ehrexplain.data.eicu_code_names`); codes
            without a name show as themselves.
        ground_truth: ``batch -> {key: 0/1 tensor}`` marking the codes that truly drive the label, or ``None``.

    Example:
        >>> source = PatientSource(cohort.dataset, code_names={"I50.9": "Heart failure"})
        >>> len(source), source.code_name("I50.9"), source.code_name("E11.9")   # unnamed codes show as themselves
        (300, 'Heart failure', 'E11.9')
    """

    dataset: object
    code_names: Mapping[str, str] = field(default_factory=dict)
    ground_truth: Callable[[dict], dict] | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, indices) -> dict:
        """Collate samples ``indices`` with PyHealth's own padding, as its dataloader does."""
        from pyhealth.datasets.utils import collate_fn_dict_with_padding

        return collate_fn_dict_with_padding([self.dataset[int(i)] for i in indices])

    def decode(self, key: str, token_ids) -> list[str]:
        """The codes behind token ids of feature ``key``."""
        vocab = inverse_vocab(self.dataset, key)
        return [vocab[int(i)] for i in token_ids]

    def code_name(self, code: str) -> str:
        """The readable name of ``code`` (the code itself when none is known)."""
        return self.code_names.get(code, code)

    def loader(self, batch_size: int = 32):
        """A non-shuffling PyHealth dataloader over every sample, in order."""
        from pyhealth.datasets import get_dataloader

        return get_dataloader(self.dataset, batch_size=batch_size, shuffle=False)


def _is_pyhealth(obj, class_name: str) -> bool:
    """Whether ``obj`` is an instance of PyHealth's ``class_name``, without importing PyHealth."""
    return any(c.__name__ == class_name and c.__module__.startswith("pyhealth") for c in type(obj).__mro__)


def loader_shuffles(loader) -> bool:
    """Whether a dataloader reorders its samples (PyHealth's own ``shuffle_samples``, or a random sampler)."""
    import torch.utils.data

    return bool(getattr(loader, "shuffle_samples", False)) or isinstance(loader.sampler, torch.utils.data.RandomSampler)


def is_patient_data(data) -> bool:
    """Whether ``data`` is a ``PatientSource``, a ``Cohort`` or a PyHealth sample or base dataset.

    Example:
        >>> is_patient_data([{"conditions": []}])  # a list of batches is not
        False
    """
    return isinstance(data, (PatientSource, Cohort)) or _is_pyhealth(data, "SampleDataset") or _is_pyhealth(
        data, "BaseDataset")


def as_source(data, task=None, code_names: Mapping[str, str] | None = None) -> PatientSource:
    """``data`` as a :class:`PatientSource`; a source comes back unchanged.

    Args:
        data: a PyHealth ``SampleDataset``, a PyHealth ``DataLoader`` that does not shuffle (its dataset
            is used, in order), a PyHealth base dataset (``eICUDataset``, ``MIMIC3Dataset``, ...) with
            ``task``, a synthetic ``Cohort`` (its planted ground truth comes along) or a ``PatientSource``.
        task: the PyHealth task to run on a base dataset (``data.set_task(task)``).
        code_names: ``{code: name}`` for the views (a ``Cohort``'s own names are not used by default).

    Raises:
        TypeError: ``data`` is none of these, or a base dataset came without ``task``.
        ValueError: the dataloader shuffles (its batches would not match the sample numbers).

    Example:
        >>> as_source([1, 2])
        Traceback (most recent call last):
        ...
        TypeError: data must be a PyHealth SampleDataset (dataset.set_task(task)), ...; got list
    """
    import torch.utils.data

    names = dict(code_names or {})
    if isinstance(data, PatientSource):
        return data if code_names is None else PatientSource(data.dataset, names, data.ground_truth)
    if _is_pyhealth(data, "SampleDataset"):
        return PatientSource(data, names)
    if isinstance(data, torch.utils.data.DataLoader):
        if loader_shuffles(data):
            raise ValueError("the dataloader shuffles, so its batches do not follow the sample numbers; "
                             "build it with shuffle=False (or pass its dataset)")
        return as_source(data.dataset, code_names=code_names)
    if _is_pyhealth(data, "BaseDataset"):
        if task is None:
            raise TypeError(f"{type(data).__name__} is a base dataset: pass task=... (e.g. MortalityPredictionEICU()) "
                            "or its samples, dataset.set_task(task)")
        return PatientSource(data.set_task(task), names)
    if isinstance(data, Cohort):
        return PatientSource(data.dataset, names, data.ground_truth)
    raise TypeError(f"data must be {ACCEPTED}; got {type(data).__name__}")


__all__ = ["ACCEPTED", "PatientSource", "as_source", "is_patient_data", "loader_shuffles"]
