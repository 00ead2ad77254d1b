"""Two real, open-access ICU databases shipped with the package, for PyHealth's own loaders.

``eicu_demo()`` is the eICU Collaborative Research Database demo 2.0.1 (about 2,520 ICU stays,
the seven tables PyHealth 2.1's ``eICUDataset`` reads besides the absent ``lab``) and
``mimic3_demo()`` the MIMIC-III clinical database demo 1.4 (100 patients, 129 admissions, the
six tables PyHealth's MIMIC-III tasks read; ``ICUSTAYS`` is header-only, as in PyHealth's copy).
Both are the PhysioNet files unchanged (their SHA-256 sums are beside them), gzip-compressed,
under the Open Database License 1.0 (``LICENSE.txt``, ``NOTICE.md``: attribution and citations).

Each returns the folder to pass as ``root``; only ``root`` differs from a run on the full
database. PyHealth writes its processed copies under ``cache_dir`` (never into ``root``), so the
installed package folder may be read-only.

Example:
    >>> from ehrexplain.data import eicu_demo, eicu_code_names
    >>> sorted(p.name for p in eicu_demo().glob("*.csv.gz"))[:3]
    ['admissionDx.csv.gz', 'diagnosis.csv.gz', 'hospital.csv.gz']
    >>> eicu_code_names()["401.9, I10"]
    'vascular disorders › hypertension'
    >>> import tempfile
    >>> from pyhealth.datasets import eICUDataset
    >>> base = eICUDataset(root=eicu_demo(), tables=["diagnosis", "medication", "physicalExam"],
    ...                    cache_dir=tempfile.mkdtemp())   # reads nothing yet: set_task(task) loads and processes
    >>> base.tables
    ['patient', 'diagnosis', 'medication', 'physicalExam']
"""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

import pandas as pd

#: What ``eicu_demo()`` and ``mimic3_demo()`` hold, and where they come from.
DEMO_DATABASES = {
    "eicu_demo": {
        "tables": ("patient", "hospital", "diagnosis", "medication", "physicalExam", "treatment", "admissionDx"),
        "citation": "Pollard T, Johnson A, Raffa J, Celi LA, Badawi O, Mark R. eICU Collaborative Research Database "
                    "Demo (version 2.0.1). PhysioNet (2021). https://doi.org/10.13026/4mxk-na84",
    },
    "mimic3_demo": {
        "tables": ("ADMISSIONS", "DIAGNOSES_ICD", "ICUSTAYS", "PATIENTS", "PRESCRIPTIONS", "PROCEDURES_ICD"),
        "citation": "Johnson A, Pollard T, Mark R. MIMIC-III Clinical Database Demo (version 1.4). PhysioNet (2019). "
                    "https://doi.org/10.13026/C2HM2Q",
    },
}
PHYSIONET_CITATION = ("Goldberger A, et al. PhysioBank, PhysioToolkit, and PhysioNet: Components of a new research "
                      "resource for complex physiologic signals. Circulation 101(23):e215-e220 (2000).")
#: The prefix every eICU physical-exam path shares; dropped from its readable name.
_EXAM_PREFIX = "notes/Progress Notes/Physical Exam/"


def _root(name: str) -> Path:
    root = Path(str(files("ehrexplain.data") / name))
    missing = [t for t in DEMO_DATABASES[name]["tables"] if not (root / f"{t}.csv.gz").is_file()]
    if missing:
        raise FileNotFoundError(f"{name}: {', '.join(f'{t}.csv.gz' for t in missing)} missing from {root}; "
                                "reinstall ehrexplain (the files are package data)")
    return root


def eicu_demo() -> Path:
    """The eICU-CRD demo's folder, the ``root`` for ``pyhealth.datasets.eICUDataset``.

    Example:
        >>> (eicu_demo() / "patient.csv.gz").is_file()
        True
    """
    return _root("eicu_demo")


def mimic3_demo() -> Path:
    """The MIMIC-III demo's folder, the ``root`` for ``pyhealth.datasets.MIMIC3Dataset``.

    Example:
        >>> (mimic3_demo() / "ADMISSIONS.csv.gz").is_file()
        True
    """
    return _root("mimic3_demo")


def _most_frequent_name(codes: pd.Series, names: pd.Series) -> dict[str, str]:
    """Each code's most frequent name (ties: the first in sorted order)."""
    pairs = pd.DataFrame({"code": codes.astype(str), "name": names.astype(str)}).dropna()
    counts = pairs.value_counts().reset_index().sort_values(["code", "count", "name"], ascending=[True, False, True])
    return dict(counts.drop_duplicates("code")[["code", "name"]].itertuples(index=False, name=None))


@functools.cache
def eicu_code_names() -> dict[str, str]:
    """Readable names of the codes ``MortalityPredictionEICU`` and its sibling tasks emit, from the data itself.

    A diagnosis code (``icd9code``, e.g. ``"401.9, I10"``) gets the last two levels of its most frequent
    ``diagnosisstring`` (``"vascular disorders › hypertension"``); a physical-exam path loses the prefix
    every path shares. Drug names are already readable and are not listed.

    Example:
        >>> eicu_code_names()["notes/Progress Notes/Physical Exam/Physical Exam/Neurologic/GCS/Score/scored"]
        'Physical Exam/Neurologic/GCS/Score/scored'
    """
    diagnoses = pd.read_csv(eicu_demo() / "diagnosis.csv.gz", usecols=["icd9code", "diagnosisstring"]).dropna()
    short = diagnoses["diagnosisstring"].str.split("|").str[-2:].str.join(" › ")
    names = _most_frequent_name(diagnoses["icd9code"], short)
    exams = pd.read_csv(eicu_demo() / "physicalExam.csv.gz", usecols=["physicalexampath"])["physicalexampath"]
    names.update({path: path.removeprefix(_EXAM_PREFIX) for path in exams.dropna().unique()})
    return names


@functools.cache
def mimic3_code_names() -> dict[str, str]:
    """Drug names of the NDC codes ``MortalityPredictionMIMIC3`` emits (each NDC's most frequent ``drug``).

    The demo ships no ICD-9 dictionary (``D_ICD_*``), so diagnoses and procedures keep their codes.

    Example:
        >>> len(mimic3_code_names()) > 100
        True
    """
    drugs = pd.read_csv(mimic3_demo() / "PRESCRIPTIONS.csv.gz", usecols=["ndc", "drug"], dtype=str).dropna()
    return _most_frequent_name(drugs["ndc"], drugs["drug"])


__all__ = ["DEMO_DATABASES", "PHYSIONET_CITATION", "eicu_code_names", "eicu_demo", "mimic3_code_names", "mimic3_demo"]
