"""A synthetic MIMIC-IV-shaped directory whose mortality labels follow a planted rule.

``write_mimic4`` writes gzipped ``hosp/`` and ``icu/`` tables with the columns
and formats PyHealth's ``MIMIC4EHRDataset`` reads, so the researcher's own
pipeline (loader, ``MortalityPredictionMIMIC4``, ``Trainer``) runs unchanged on
it. Each admission's diagnoses, procedures and prescriptions are scored by a
:class:`~ehrexplain.data.planted_rule.PlantedRule`; when the noisy score passes the
threshold, the patient's *next* admission ends in death
(``hospital_expire_flag`` = 1), which is exactly the task's label. The returned
:class:`Mimic4Truth` gives the expected label of every task sample and, for a
batch, the tokens that truly drive it.

Codes look like MIMIC-IV's: ICD-10-CM without dots, ICD-10-PCS, 11-digit NDC
(the NDCs are illustrative, not looked up).

Example:
    >>> import tempfile
    >>> truth = write_mimic4(tempfile.mkdtemp(), n_patients=50, seed=0)
    >>> sorted(p.name for p in (truth.root / "hosp").iterdir())[:2]
    ['admissions.csv.gz', 'diagnoses_icd.csv.gz']
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import torch

from ..core.batch import inverse_vocab
from .planted_rule import PlantedRule, label_threshold

DIAGNOSES = {  # ICD-10-CM as MIMIC-IV stores it: no dot
    "I509": "Heart failure", "N183": "Chronic kidney disease, stage 3", "E119": "Type 2 diabetes mellitus",
    "I10": "Essential hypertension", "E785": "Hyperlipidemia", "J449": "COPD", "I4891": "Atrial fibrillation",
    "I2510": "Coronary artery disease", "F329": "Major depressive disorder", "K219": "GERD",
    "D649": "Anemia", "N390": "Urinary tract infection", "J189": "Pneumonia", "E039": "Hypothyroidism",
    "G4733": "Obstructive sleep apnea", "K5730": "Diverticulosis", "I639": "Cerebral infarction",
    "F17210": "Nicotine dependence", "M109": "Gout", "E669": "Obesity",
}
DRUG_NAMES = ("enalapril", "spironolactone", "atorvastatin", "metformin", "bisoprolol", "furosemide", "aspirin",
              "rivaroxaban", "omeprazole", "acetaminophen", "levothyroxine", "albuterol", "sertraline", "amlodipine",
              "insulin glargine", "allopurinol", "heparin", "vancomycin", "potassium chloride", "ondansetron")
PROCEDURES_PCS = {
    "5A1D70Z": "Hemodialysis, intermittent", "0BH17EZ": "Endotracheal intubation",
    "5A1955Z": "Mechanical ventilation > 96 h", "02HV33Z": "Central venous catheter insertion",
    "30233N1": "Red blood cell transfusion", "4A023N7": "Left heart catheterization",
    "B2111ZZ": "Coronary angiography", "0W9G3ZZ": "Paracentesis", "3E0G76Z": "Enteral nutrition",
    "0DTJ4ZZ": "Laparoscopic appendectomy", "0FT44ZZ": "Laparoscopic cholecystectomy",
    "BW28ZZZ": "CT of abdomen and pelvis",
}
# One illustrative 11-digit NDC per drug (not looked up; leading digit never 0, so no zeros get lost).
NDC = {f"{60000000000 + 7919 * i * 1009:011d}": name for i, name in enumerate(DRUG_NAMES, start=1)}
_NDC_OF = {name: code for code, name in NDC.items()}
MIMIC4_CODE_NAMES: dict[str, str] = {**DIAGNOSES, **PROCEDURES_PCS, **NDC}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the only format MortalityPredictionMIMIC4 parses


def mimic4_rule(**overrides) -> PlantedRule:
    """The default rule: heart failure, CKD 3 and dialysis raise risk; ACE inhibitor +
    spironolactone interact; a statin protects; hypertension and hyperlipidemia only co-occur.

    Example:
        >>> sorted(mimic4_rule().risk_codes)
        ['5A1D70Z', 'I509', 'N183']
    """
    defaults = dict(
        risk_codes={"I509": 2.0, "N183": 1.5, "5A1D70Z": 1.5},
        interaction=(_NDC_OF["enalapril"], _NDC_OF["spironolactone"]),
        protective_code=_NDC_OF["atorvastatin"],
        confounders=("I10", "E785"),
        prevalence=0.25,
    )
    return PlantedRule(**{**defaults, **overrides})


@dataclass
class Mimic4Truth:
    """What ``write_mimic4`` planted: the rule, its threshold and each sample's label.

    ``labels`` maps the ``hadm_id`` (as text, like a task sample's ``visit_id``) of
    every admission followed by another one to the task label it must get.
    """

    root: Path
    rule: "PlantedRule"
    threshold: float
    labels: dict[str, int]
    code_names: dict[str, str]

    @property
    def label_rate(self) -> float:
        """Fraction of task samples labelled 1."""
        return sum(self.labels.values()) / len(self.labels)

    def ground_truth(self, batch: dict, dataset) -> dict[str, torch.Tensor]:
        """0/1 masks shaped like each token feature of ``batch``: 1 on the codes driving its label.

        ``dataset`` is the task's sample dataset (or ``model.dataset``): its fitted
        processors turn token ids back into codes.

        Example:
            >>> import tempfile
            >>> from pyhealth.datasets import create_sample_dataset, get_dataloader
            >>> from pyhealth.tasks import MortalityPredictionMIMIC4 as Task
            >>> truth = write_mimic4(tempfile.mkdtemp(), n_patients=20, seed=0)
            >>> ace, spironolactone = truth.rule.interaction       # two NDCs that only count together
            >>> rows = [{"patient_id": "1", "conditions": ["I509"], "procedures": ["0DTJ4ZZ"],
            ...          "drugs": [ace, spironolactone], "mortality": 1},
            ...         {"patient_id": "2", "conditions": ["I10"], "procedures": ["0DTJ4ZZ"],
            ...          "drugs": [ace], "mortality": 0}]
            >>> samples = create_sample_dataset(rows, Task.input_schema, Task.output_schema)  # as set_task gives
            >>> truth.ground_truth(next(iter(get_dataloader(samples, batch_size=2))), samples)["drugs"].tolist()
            [[1, 1], [0, 0]]
        """
        vocabs = {key: inverse_vocab(dataset, key) for key in dataset.input_processors}
        missing = [key for key in vocabs if key not in batch]
        if missing:
            raise KeyError(f"batch is missing feature key(s) {missing}; it has {sorted(batch)}")
        n_rows = len(next(iter(batch[key] for key in vocabs)))
        drivers = []
        for row in range(n_rows):
            codes = {vocabs[k].get(int(i)) for k in vocabs for i in batch[k][row].flatten().tolist()}
            drivers.append(self.rule.drivers(codes - {None}))
        truth = {}
        for key, vocab in vocabs.items():
            value = batch[key]
            truth[key] = torch.zeros_like(value, dtype=torch.long)
            for row, found in enumerate(drivers):
                ids = torch.tensor([i for i, code in vocab.items() if code in found], dtype=value.dtype)
                truth[key][row] = torch.isin(value[row], ids).long()
        return truth


def _admission_codes(rule: PlantedRule, rng: random.Random) -> dict[str, list[str]]:
    """One admission's diagnoses, procedures and NDCs: planted codes by chance, then background."""
    dx = [c for c in rule.risk_codes if c in DIAGNOSES and rng.random() < 0.3]
    px = [c for c in rule.risk_codes if c in PROCEDURES_PCS and rng.random() < (0.45 if "N183" in dx else 0.12)]
    drug_p = 0.55 if "I509" in dx else 0.3  # heart failure makes the interacting drugs likelier
    rx = [c for c in rule.interaction if rng.random() < drug_p]
    rx += [rule.protective_code] if rng.random() < 0.3 else []
    conf_p = 0.1 + 0.3 * (len(dx) + len(px))  # confounders track risk, so they correlate with the label
    dx += [c for c in rule.confounders if rng.random() < conf_p]
    planted = rule.planted
    for codes, vocab, lo, hi in ((dx, DIAGNOSES, 2, 5), (px, PROCEDURES_PCS, 1, 2), (rx, NDC, 1, 3)):
        codes += rng.sample([c for c in vocab if c not in planted], rng.randint(lo, hi))
        rng.shuffle(codes)
    return {"diagnoses": dx, "procedures": px, "prescriptions": rx}


def _noisy_score(rule: PlantedRule, codes: dict, rng: random.Random) -> float:
    scale = rule.noise * math.sqrt(3) / math.pi  # logistic noise with std rule.noise
    u = min(max(rng.random(), 1e-12), 1 - 1e-12)
    return rule.score([c for group in codes.values() for c in group]) + scale * math.log(u / (1 - u))


def _patient_rows(pid: int, admissions: list, outcome: list, rng: random.Random, tables: dict) -> None:
    """Append one patient's rows to every table; ``outcome[i]`` = admission i ends in death."""
    age, year = rng.randint(18, 89), rng.randint(2110, 2180)
    t = datetime(year, 1, 1) + timedelta(hours=rng.randint(0, 24 * 200))
    dod = ""
    for i, (codes, died) in enumerate(zip(admissions, outcome)):
        hadm, admit = pid * 100 + i, t
        disch = admit + timedelta(hours=rng.randint(30, 240))
        dod = disch.strftime("%Y-%m-%d") if died else dod
        tables["admissions"].append([pid, hadm, admit.strftime(TIME_FORMAT), disch.strftime(TIME_FORMAT),
                                     disch.strftime(TIME_FORMAT) if died else "", "EW EMER.", "EMERGENCY ROOM",
                                     "DIED" if died else "HOME", "Medicare", "ENGLISH", "MARRIED", "WHITE", int(died)])
        stay_end = admit + (disch - admit) / 2
        tables["icustays"].append([pid, hadm, hadm * 10, "MICU", "MICU", admit.strftime(TIME_FORMAT),
                                   stay_end.strftime(TIME_FORMAT), round((stay_end - admit) / timedelta(days=1), 4)])
        for seq, code in enumerate(codes["diagnoses"], start=1):
            tables["diagnoses_icd"].append([pid, hadm, seq, code, 10])
        for seq, code in enumerate(codes["procedures"], start=1):
            tables["procedures_icd"].append([pid, hadm, seq, admit.strftime("%Y-%m-%d"), code, 10])
        for n, ndc in enumerate(codes["prescriptions"]):
            start = admit + timedelta(hours=2 + n)
            tables["prescriptions"].append([pid, hadm, start.strftime(TIME_FORMAT), disch.strftime(TIME_FORMAT), "MAIN",
                                            NDC[ndc], ndc, "1 tab", "1", "TAB", "PO"])
        t = disch + timedelta(days=rng.randint(10, 300))
    tables["patients"].append([pid, rng.choice("FM"), age, year, "2017 - 2019", dod])


COLUMNS = {
    "patients": ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"],
    "admissions": ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
                   "admission_location", "discharge_location", "insurance", "language", "marital_status", "race",
                   "hospital_expire_flag"],
    "icustays": ["subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit", "intime", "outtime", "los"],
    "diagnoses_icd": ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"],
    "procedures_icd": ["subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version"],
    "prescriptions": ["subject_id", "hadm_id", "starttime", "stoptime", "drug_type", "drug", "ndc", "prod_strength",
                      "dose_val_rx", "dose_unit_rx", "route"],
}


def write_mimic4(root, n_patients: int = 200, seed: int = 0, rule=None,
                 max_admissions: int = 4) -> Mimic4Truth:
    """Write a MIMIC-IV-shaped directory of ``n_patients`` synthetic adults under ``root``.

    Each patient gets 2..``max_admissions`` admissions; an admission whose noisy
    rule score passes the threshold (set so that a ``rule.prevalence`` fraction of
    admissions pass) is followed by one final admission in which the patient dies.
    Load it as you would MIMIC-IV: ``MIMIC4EHRDataset(root=root, tables=[
    "diagnoses_icd", "procedures_icd", "prescriptions"])``.

    Example:
        >>> import tempfile
        >>> truth = write_mimic4(tempfile.mkdtemp(), n_patients=300, seed=1)
        >>> abs(truth.label_rate - truth.rule.prevalence) < 0.06
        True
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, int) or n_patients < 1:
        raise ValueError(f"n_patients must be an integer >= 1, got {n_patients!r}")
    if isinstance(max_admissions, bool) or not isinstance(max_admissions, int) or max_admissions < 2:
        raise ValueError(f"max_admissions must be an integer >= 2 (the task labels the next admission), "
                         f"got {max_admissions!r}")
    rule = mimic4_rule() if rule is None else rule
    rng = random.Random(seed)
    drawn = [[_admission_codes(rule, rng) for _ in range(rng.randint(2, max_admissions))] for _ in range(n_patients)]
    scores = [[_noisy_score(rule, codes, rng) for codes in patient] for patient in drawn]
    threshold = label_threshold([s for patient in scores for s in patient], rule.prevalence)
    tables, labels = {name: [] for name in COLUMNS}, {}
    for pid, (patient, patient_scores) in enumerate(zip(drawn, scores), start=10000000):
        for i, score in enumerate(patient_scores[:-1]):
            labels[str(pid * 100 + i)] = int(score > threshold)
            if score > threshold:  # the next admission is the last: the patient dies in it
                patient = patient[: i + 2]
                break
        outcome = [False] * (len(patient) - 1) + [bool(labels[str(pid * 100 + len(patient) - 2)])]
        _patient_rows(pid, patient, outcome, rng, tables)
    root = Path(root)
    for name, rows in tables.items():
        folder = root / ("icu" if name == "icustays" else "hosp")
        folder.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(rows, columns=COLUMNS[name])
        frame.to_csv(folder / f"{name}.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
    return Mimic4Truth(root, rule, threshold, labels, dict(MIMIC4_CODE_NAMES))


__all__ = ["DIAGNOSES", "MIMIC4_CODE_NAMES", "Mimic4Truth", "NDC", "PROCEDURES_PCS", "mimic4_rule", "write_mimic4"]
