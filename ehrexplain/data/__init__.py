"""Data to explain: synthetic cohorts with a planted rule, a MIMIC-IV-shaped writer, the series' demo
model, training, the eICU and MIMIC-III demo databases, and one adapter (``as_source``) for all of them.

Example:
    >>> from ehrexplain.data import PlantedRule, make_cohort
    >>> cohort = make_cohort(n_patients=20, seed=0)
    >>> cohort.rule == PlantedRule()
    True
"""

from .demo import EPOCHS, N_PATIENTS, TEST_FRACTION, Demo, demo
from .demo_databases import eicu_code_names, eicu_demo, mimic3_code_names, mimic3_demo
from .mimic4 import MIMIC4_CODE_NAMES, Mimic4Truth, mimic4_rule, write_mimic4
from .planted_rule import PlantedRule, label_threshold
from .sources import PatientSource, as_source, is_patient_data
from .synthetic import CODE_NAMES, LAB_NAMES, Cohort, auroc, make_cohort, model_auroc, train_demo_model
from .training import train_model

__all__ = [
    "EPOCHS", "N_PATIENTS", "TEST_FRACTION", "Demo", "demo",
    "MIMIC4_CODE_NAMES", "Mimic4Truth", "mimic4_rule", "write_mimic4",
    "eicu_code_names", "eicu_demo", "mimic3_code_names", "mimic3_demo",
    "PlantedRule", "label_threshold", "PatientSource", "as_source", "is_patient_data",
    "CODE_NAMES", "LAB_NAMES", "Cohort", "auroc", "make_cohort", "model_auroc", "train_demo_model", "train_model",
]
