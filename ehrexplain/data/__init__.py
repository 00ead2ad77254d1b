"""Data to explain: synthetic cohorts with a planted rule, a MIMIC-IV-shaped writer, the series' demo
model, and training.

Example:
    >>> from ehrexplain.data import PlantedRule, make_cohort
    >>> cohort = make_cohort(n_patients=20, seed=0)
    >>> cohort.rule == PlantedRule()
    True
"""

from .demo import EPOCHS, N_PATIENTS, TEST_FRACTION, Demo, demo
from .mimic4 import MIMIC4_CODE_NAMES, Mimic4Truth, mimic4_rule, write_mimic4
from .planted_rule import PlantedRule, label_threshold
from .synthetic import CODE_NAMES, LAB_NAMES, Cohort, auroc, make_cohort, model_auroc, train_demo_model
from .training import train_model

__all__ = [
    "EPOCHS", "N_PATIENTS", "TEST_FRACTION", "Demo", "demo",
    "MIMIC4_CODE_NAMES", "Mimic4Truth", "mimic4_rule", "write_mimic4",
    "PlantedRule", "label_threshold",
    "CODE_NAMES", "LAB_NAMES", "Cohort", "auroc", "make_cohort", "model_auroc", "train_demo_model", "train_model",
]
