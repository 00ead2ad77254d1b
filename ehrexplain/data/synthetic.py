"""Synthetic EHR cohorts whose labels follow a planted, readable rule.

Explanations can only be checked against a known truth. Each cohort here draws
codes per patient, scores them with a :class:`PlantedRule` (risk codes, one drug
interaction, one protective code; confounders that co-occur but do nothing) and
labels the top ``prevalence`` fraction. ``Cohort.ground_truth`` then says which
tokens of a batch truly drive each label.

Example:
    >>> cohort = make_cohort(n_patients=300, seed=0)
    >>> train, test = cohort.split(0.3, seed=0)
    >>> model = train_demo_model(cohort, indices=train)
    >>> model_auroc(model, cohort, test) > 0.75
    True
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

import torch

from ..core.batch import inverse_vocab
from ..core.model_state import evaluation_mode
from .planted_rule import PlantedRule, label_threshold

CONDITIONS = {
    "E11.9": "Type 2 diabetes mellitus", "I50.9": "Heart failure", "N18.3": "Chronic kidney disease, stage 3",
    "I10": "Essential hypertension", "E78.5": "Hyperlipidemia", "E66.9": "Obesity", "J44.9": "COPD",
    "J45.909": "Asthma", "I48.91": "Atrial fibrillation", "I25.10": "Coronary artery disease",
    "F32.9": "Major depressive disorder", "F41.1": "Generalized anxiety disorder", "K21.9": "GERD",
    "M54.5": "Low back pain", "M17.9": "Osteoarthritis of knee", "E03.9": "Hypothyroidism",
    "D64.9": "Anemia", "G47.33": "Obstructive sleep apnea", "N39.0": "Urinary tract infection",
    "J18.9": "Pneumonia", "K59.00": "Constipation", "R51.9": "Headache", "G43.909": "Migraine",
    "L40.0": "Psoriasis", "M81.0": "Osteoporosis", "H40.9": "Glaucoma", "H25.9": "Age-related cataract",
    "E55.9": "Vitamin D deficiency", "K57.30": "Diverticulosis", "I73.9": "Peripheral vascular disease",
    "R73.03": "Prediabetes", "Z87.891": "History of nicotine dependence", "F17.210": "Nicotine dependence",
    "J30.9": "Allergic rhinitis", "B18.2": "Chronic hepatitis C", "K76.0": "Fatty liver",
    "M10.9": "Gout", "I63.9": "Cerebral infarction", "G30.9": "Alzheimer disease", "C61": "Prostate cancer",
}
PROCEDURES = {
    "93000": "Electrocardiogram", "71046": "Chest X-ray, 2 views", "80053": "Comprehensive metabolic panel",
    "85025": "Complete blood count", "83036": "HbA1c test", "93306": "Echocardiogram",
    "90935": "Hemodialysis", "45378": "Colonoscopy", "99406": "Smoking cessation counseling",
    "36415": "Venipuncture", "81001": "Urinalysis", "77067": "Screening mammography",
    "92014": "Eye exam", "97110": "Therapeutic exercise", "0DTJ4ZZ": "Appendectomy",
}
DRUGS = {
    "C09AA02": "enalapril", "C03DA01": "spironolactone", "C10AA05": "atorvastatin",
    "A10BA02": "metformin", "C07AB07": "bisoprolol", "C03CA01": "furosemide", "B01AC06": "aspirin",
    "B01AF01": "rivaroxaban", "A02BC01": "omeprazole", "N02BE01": "paracetamol", "H03AA01": "levothyroxine",
    "R03AC02": "salbutamol", "N06AB06": "sertraline", "C08CA01": "amlodipine", "A10AE04": "insulin glargine",
    "M01AE01": "ibuprofen", "J01CA04": "amoxicillin", "M04AA01": "allopurinol", "N05BA12": "alprazolam",
    "A11CC05": "cholecalciferol",
}
CODE_NAMES: dict[str, str] = {**CONDITIONS, **PROCEDURES, **DRUGS}
LAB_NAMES = ("creatinine", "hba1c", "log_ntprobnp", "potassium")
SHAPES = ("flat", "nested")


def _draw_codes(rule: PlantedRule, rng: random.Random) -> list[str]:
    """One patient's codes: planted codes by chance, then background codes."""
    codes = [c for c in rule.risk_codes if rng.random() < 0.3]
    # Heart failure makes the interacting drugs likelier, as in real prescribing.
    drug_p = 0.55 if "I50.9" in codes else 0.3
    codes += [c for c in rule.interaction if rng.random() < drug_p]
    if rng.random() < 0.3:
        codes.append(rule.protective_code)
    # Confounders track the number of risk codes, so they correlate with the label.
    conf_p = 0.1 + 0.3 * len([c for c in codes if c in rule.risk_codes])
    codes += [c for c in rule.confounders if rng.random() < conf_p]
    planted = rule.planted
    for vocab, lo, hi in ((CONDITIONS, 2, 6), (PROCEDURES, 1, 3), (DRUGS, 1, 3)):
        pool = [c for c in vocab if c not in planted]
        codes += rng.sample(pool, rng.randint(lo, hi))
    return list(dict.fromkeys(codes))  # drop repeats, keep order


def _labs(codes: list[str], rule: PlantedRule, rng: random.Random) -> list[float]:
    """Lab values that correlate with conditions but never enter the score."""
    has = set(codes).__contains__
    both = set(rule.interaction) <= set(codes)
    return [
        round(0.9 + 0.8 * has("N18.3") + rng.gauss(0, 0.2), 3),
        round(5.5 + 2.0 * has("E11.9") + rng.gauss(0, 0.5), 3),
        round(4.5 + 2.0 * has("I50.9") + rng.gauss(0, 0.7), 3),
        round(4.2 + 0.6 * both + rng.gauss(0, 0.3), 3),
    ]


def _layout(codes: list[str], shape: str, rng: random.Random) -> dict:
    """Place codes into flat lists by vocabulary, or spread them over visits."""
    rng.shuffle(codes)  # positions must not give the label away
    if shape == "flat":
        # Codes outside the vocabularies (a user's own rule) count as conditions.
        return {
            "conditions": [c for c in codes if c not in PROCEDURES and c not in DRUGS],
            "procedures": [c for c in codes if c in PROCEDURES],
            "drugs": [c for c in codes if c in DRUGS],
        }
    n_visits = rng.randint(1, min(6, len(codes)))
    visits = [[c] for c in codes[:n_visits]]  # every visit gets at least one code
    for code in codes[n_visits:]:
        visits[rng.randrange(n_visits)].append(code)
    return {"visits": visits}


@dataclass
class Cohort:
    """Samples, their PyHealth dataset, and the rule that labelled them.

    Example:
        >>> cohort = make_cohort(n_patients=50, seed=0)
        >>> batch = cohort.batch([0, 1, 2])
        >>> truth = cohort.ground_truth(batch)
        >>> truth["conditions"].shape == batch["conditions"].shape
        True
    """

    samples: list[dict]
    dataset: object
    rule: PlantedRule
    code_names: dict[str, str]
    feature_keys: list[str]
    threshold: float = 0.0

    @property
    def prevalence(self) -> float:
        """Observed fraction of positive labels."""
        return sum(s["label"] for s in self.samples) / len(self.samples)

    def codes(self, index: int) -> set[str]:
        """All codes of sample ``index``, whatever list or visit holds them."""
        sample = self.samples[index]
        if "visits" in sample:
            return {c for visit in sample["visits"] for c in visit}
        return {c for k in ("conditions", "procedures", "drugs") for c in sample[k]}

    def loader(self, batch_size: int = 32, shuffle: bool = False, indices=None, seed: int = 0):
        """PyHealth dataloader over the cohort, or over ``indices`` of it.

        Example:
            >>> next(iter(make_cohort(40).loader(8)))["label"].shape
            torch.Size([8, 1])
        """
        from pyhealth.datasets import get_dataloader

        dataset = self.dataset if indices is None else self.dataset.subset(list(indices))
        return get_dataloader(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed)

    def batch(self, indices) -> dict:
        """The batch a dataloader would give for these sample indices.

        Example:
            >>> make_cohort(40).batch([3, 5])["patient_id"]
            ['p3', 'p5']
        """
        from pyhealth.datasets.utils import collate_fn_dict_with_padding

        return collate_fn_dict_with_padding([self.dataset[i] for i in indices])

    def split(self, test_fraction: float = 0.3, seed: int = 0) -> tuple[list[int], list[int]]:
        """Random train/test index lists; both share one vocabulary.

        Example:
            >>> train, test = make_cohort(100).split(0.3)
            >>> len(train), len(test)
            (70, 30)
        """
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        order = list(range(len(self.samples)))
        random.Random(seed).shuffle(order)
        n_test = max(1, round(test_fraction * len(order)))
        return sorted(order[n_test:]), sorted(order[:n_test])

    def decode(self, key: str, token_ids) -> list[str]:
        """Token ids of feature ``key`` back to codes, padding skipped.

        Example:
            >>> c = make_cohort(20)
            >>> c.decode("conditions", c.batch([0])["conditions"][0]) == c.samples[0]["conditions"]
            True
        """
        vocab = inverse_vocab(self.dataset, key)
        ids = torch.as_tensor(token_ids).flatten().tolist()
        return [vocab.get(int(i), "<unk>") for i in ids if int(i) != 0]

    def ground_truth(self, batch: dict) -> dict[str, torch.Tensor]:
        """0/1 masks, shaped like each feature tensor: 1 on driver tokens.

        Continuous features (``labs``) are all zeros: they correlate with the
        label through the conditions but the rule never reads them.

        Example:
            >>> c = make_cohort(20)
            >>> batch = c.batch([2])
            >>> c.decode("conditions", batch["conditions"][0][c.ground_truth(batch)["conditions"][0].bool()])
            ['N18.3']
        """
        by_pid = {s["patient_id"]: i for i, s in enumerate(self.samples)}
        truth = {}
        for key in self.feature_keys:
            value = batch[key]
            if value.is_floating_point():
                truth[key] = torch.zeros_like(value, dtype=torch.long)
                continue
            vocab = inverse_vocab(self.dataset, key)
            mask = torch.zeros_like(value, dtype=torch.long)
            for row, pid in enumerate(batch["patient_id"]):
                drivers = self.rule.drivers(self.codes(by_pid[pid]))
                ids = [i for i, code in vocab.items() if code in drivers]
                mask[row] = torch.isin(value[row], torch.tensor(ids, dtype=value.dtype)).long()
            truth[key] = mask
        return truth


def make_cohort(
    n_patients: int = 300, shape: str = "flat", rule: PlantedRule | None = None, with_labs: bool = False, seed: int = 0
) -> Cohort:
    """Draw a cohort whose labels follow ``rule`` (default :class:`PlantedRule`).

    The intercept is the score cut that labels a ``rule.prevalence`` fraction
    positive; with ``noise=0`` the label is exactly ``score > cohort.threshold``
    (the observed rate may then miss the target, as scores are discrete).

    Example:
        >>> cohort = make_cohort(n_patients=100, shape="nested", seed=1)
        >>> cohort.feature_keys, round(cohort.prevalence, 1)
        (['visits'], 0.3)
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if isinstance(n_patients, bool) or not isinstance(n_patients, int) or n_patients < 1:
        raise ValueError(f"n_patients must be an integer >= 1, got {n_patients!r}")
    rule = PlantedRule() if rule is None else rule
    rng = random.Random(seed)
    codes = [_draw_codes(rule, rng) for _ in range(n_patients)]
    # Standard logistic noise scaled so that its std equals rule.noise.
    scale = rule.noise * math.sqrt(3) / math.pi
    noisy = []
    for patient in codes:
        u = min(max(rng.random(), 1e-12), 1 - 1e-12)
        noisy.append(rule.score(patient) + scale * math.log(u / (1 - u)))
    threshold = label_threshold(noisy, rule.prevalence)
    samples = []
    for i, patient in enumerate(codes):
        sample = {"patient_id": f"p{i}", "visit_id": "v0", **_layout(list(patient), shape, rng)}
        if with_labs:
            sample["labs"] = _labs(patient, rule, rng)
        sample["label"] = int(noisy[i] > threshold)
        samples.append(sample)
    schema = {"conditions": "sequence", "procedures": "sequence", "drugs": "sequence"}
    schema = schema if shape == "flat" else {"visits": "nested_sequence"}
    if with_labs:
        schema["labs"] = "tensor"
    from pyhealth.datasets import create_sample_dataset

    label_logger = logging.getLogger("pyhealth.processors.label_processor")
    level = label_logger.level
    label_logger.setLevel(logging.WARNING)  # its "Label label vocab: {0: 0, 1: 1}" says nothing here
    try:
        dataset = create_sample_dataset(
            samples=samples, input_schema=schema, output_schema={"label": "binary"}, dataset_name=f"synthetic_{shape}"
        )
    finally:
        label_logger.setLevel(level)
    names = {**CODE_NAMES, **{c: c for c in rule.planted if c not in CODE_NAMES}}
    return Cohort(samples, dataset, rule, names, list(schema), threshold)


def train_demo_model(
    cohort: Cohort, kind: str = "transformer", seed: int = 0, epochs: int = 10, lr: float = 3e-3, indices=None
):
    """Train a small PyHealth model on the cohort (or on ``indices`` of it).

    ``kind`` is "transformer" (embedding 32, 2 heads, 2 layers), "mlp" or
    "stageattention" (nested cohorts). About 2 s on one CPU thread. Measured on
    ``make_cohort(300, seed=s).split(0.3)``: held-out AUROC 0.86 for s=0 and
    0.77-0.89 over s=0..4 (the noise-free score itself reaches about 0.96).

    Example:
        >>> small = make_cohort(60)     # the module example trains the 300-patient model and checks its AUROC
        >>> [type(train_demo_model(small, kind=kind, epochs=1)).__name__ for kind in ("transformer", "mlp")]
        ['Transformer', 'MLP']
    """
    from pyhealth.models import MLP, StageAttentionNet, Transformer

    from .training import train_model

    builders = {
        "transformer": lambda ds: Transformer(dataset=ds, embedding_dim=32, heads=2, num_layers=2, dropout=0.1),
        "mlp": lambda ds: MLP(dataset=ds, embedding_dim=32, hidden_dim=32),
        "stageattention": lambda ds: StageAttentionNet(dataset=ds, embedding_dim=32, chunk_size=16, levels=2),
    }
    if kind not in builders:
        raise ValueError(f"kind must be one of {sorted(builders)}, got {kind!r}")
    torch.manual_seed(seed)  # the model's initial weights come from torch's global generator
    model = builders[kind](cohort.dataset)
    train_set = cohort.dataset if indices is None else cohort.dataset.subset(list(indices))
    return train_model(model, train_set, epochs=epochs, lr=lr, seed=seed)


def auroc(y_true, y_score) -> float:
    """Area under the ROC curve by the Mann-Whitney formula (pairwise, ties half).

    Example:
        >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    y = torch.as_tensor(y_true).flatten().bool()
    s = torch.as_tensor(y_score, dtype=torch.float64).flatten()
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"AUROC needs both classes; got {len(pos)} positives and {len(neg)} negatives")
    # P(score of a random positive > a random negative), ties counted half; O(n_pos * n_neg) is fine here.
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


@torch.no_grad()
def model_auroc(model, cohort_or_loader, indices=None) -> float:
    """AUROC of a binary PyHealth model on a loader, a cohort, or cohort ``indices``.

    Example:
        >>> cohort = make_cohort(100)
        >>> 0.0 <= model_auroc(train_demo_model(cohort, epochs=1), cohort) <= 1.0
        True
    """
    if isinstance(cohort_or_loader, Cohort):
        loader = cohort_or_loader.loader(batch_size=64, indices=indices)
    else:
        loader = cohort_or_loader
    probs, labels = [], []
    with evaluation_mode(model):
        for batch in loader:
            out = model(**batch)
            probs.append(out["y_prob"].flatten())
            labels.append(out["y_true"].flatten())
    return auroc(torch.cat(labels), torch.cat(probs))


__all__ = [
    "CODE_NAMES", "CONDITIONS", "DRUGS", "LAB_NAMES", "PROCEDURES",
    "Cohort", "PlantedRule", "auroc", "make_cohort", "model_auroc", "train_demo_model",
]
