"""Faithfulness metrics and sanity checks for token attributions.

Paper:
    DeYoung et al. "ERASER." ACL 2020 (comprehensiveness, sufficiency); Petsiuk et al.
    "RISE." BMVC 2018 (deletion/insertion); Adebayo et al. "Sanity Checks for Saliency
    Maps." NeurIPS 2018 (model randomization).

Conventions:
    1. The target is fixed once on the unperturbed input (predicted class; index 0 for
       one-logit binary models) and every perturbed forward scores it with the model's
       ``y_prob``, as PyHealth's metrics do: for binary models ``sigmoid(logit)`` = P(positive).
    2. Per sample and feature key, real (non-padding) tokens are ranked by score, highest
       first, ties in input order: most supporting the target for signed methods (IG,
       DeepLift), most relevant for non-negative ones (rollout, Chefer).
    3. ``k%`` of a feature is ``ceil(k / 100 * n_real)`` tokens, at least 1. Removing writes
       0 (padding id, or 0.0 for continuous values); the batch reaches the model as a
       dataloader would deliver it, so the model applies its own padding rules.
    4. Samples for which a model returns NaN once a feature is emptied (PyHealth's MLP
       averages over zero tokens) are re-scored keeping that feature's least important
       token, with a ``RuntimeWarning``.

Example:
    >>> from ehrexplain import AttentionRollout, IntegratedGradients
    >>> rollout = comprehensiveness(model, batch, AttentionRollout(model).attribute(**batch))
    >>> ig = comprehensiveness(model, batch, IntegratedGradients(model).attribute(**batch))
    >>> rollout.shape, bool(ig.mean() > rollout.mean())   # per patient; IG's top tokens matter more
    (torch.Size([8]), True)
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..core.batch import unpack_batch
from ..data.sources import as_source, is_patient_data
from .perturbation import Perturber, check_attributions, predict

PERCENTAGES = (1, 5, 10, 20, 50)


def _check_percentages(percentages: Sequence[float]) -> list[float]:
    if len(percentages) == 0 or any(not 0 < p <= 100 for p in percentages):
        raise ValueError(f"percentages must be non-empty and each in (0, 100], got {list(percentages)}")
    return sorted(float(p) for p in percentages)  # sorted: the float mean must not depend on the order


def comprehensiveness(model, batch: dict, attributions: dict, percentages: Sequence[float] = PERCENTAGES) -> torch.Tensor:
    """ERASER comprehensiveness ``[B]``: mean over k of p(x) - p(x without its top-k% tokens).

    Higher is better: removing what the explanation calls important should hurt.

    Example:
        >>> from ehrexplain import IntegratedGradients
        >>> scores = IntegratedGradients(model).attribute(**batch)
        >>> comprehensiveness(model, batch, scores, percentages=[10, 50]).shape   # one mean over k per patient
        torch.Size([8])
    """
    ks = _check_percentages(percentages)
    return _comprehensiveness(Perturber(model, batch, attributions), ks)


def sufficiency(model, batch: dict, attributions: dict, percentages: Sequence[float] = PERCENTAGES) -> torch.Tensor:
    """ERASER sufficiency ``[B]``: mean over k of p(x) - p(only the top-k% tokens kept).

    Lower is better: the top tokens alone should keep the prediction.

    Example:
        >>> from ehrexplain import CheferRelevance
        >>> scores = CheferRelevance(model).attribute(**batch)
        >>> sufficiency(model, batch, scores).shape
        torch.Size([8])
        >>> bool((sufficiency(model, batch, scores, percentages=[100]) == 0).all())   # keeping all keeps p(x)
        True
    """
    ks = _check_percentages(percentages)
    return _sufficiency(Perturber(model, batch, attributions), ks)


def deletion_curve(model, batch: dict, attributions: dict, n_points: int = 11):
    """``(fractions [n_points], probabilities [n_points, B])`` as the top tokens are deleted.

    Fraction 0 is the full input, 1 the empty (all-padding) one. Lower area is better.

    Example:
        >>> from ehrexplain import AttentionRollout
        >>> fractions, probs = deletion_curve(model, batch, AttentionRollout(model).attribute(**batch), n_points=5)
        >>> fractions.tolist(), probs.shape, area_under_curve(fractions, probs).shape
        ([0.0, 0.25, 0.5, 0.75, 1.0], torch.Size([5, 8]), torch.Size([8]))
    """
    _check_n_points(n_points)
    return _curve(Perturber(model, batch, attributions), n_points, insertion=False)


def insertion_curve(model, batch: dict, attributions: dict, n_points: int = 11):
    """Like :func:`deletion_curve`, inserting the top tokens into an empty input. Higher area is better.

    Example:
        >>> from ehrexplain import AttentionRollout
        >>> scores = AttentionRollout(model).attribute(**batch)
        >>> fractions, probs = insertion_curve(model, batch, scores)
        >>> probs.shape, bool(probs[-1].equal(deletion_curve(model, batch, scores)[1][0]))   # ends at the full input
        (torch.Size([11, 8]), True)
    """
    _check_n_points(n_points)
    return _curve(Perturber(model, batch, attributions), n_points, insertion=True)


def _comprehensiveness(pert: Perturber, ks: list[float]) -> torch.Tensor:
    return torch.stack([pert.full - pert.probability(pert.top(k / 100, True)) for k in ks]).mean(0)


def _sufficiency(pert: Perturber, ks: list[float]) -> torch.Tensor:
    return torch.stack([pert.full - pert.probability(pert.rest(pert.top(k / 100, True))) for k in ks]).mean(0)


def _check_n_points(n_points: int) -> None:
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2, got {n_points}")


def _curve(pert: Perturber, n_points: int, insertion: bool):
    fractions = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
    tops = [pert.top(f, False) for f in fractions.tolist()]
    return fractions, torch.stack([pert.probability(pert.rest(top) if insertion else top) for top in tops])


def area_under_curve(fractions: torch.Tensor, curve: torch.Tensor) -> torch.Tensor:
    """Trapezoid area of ``curve [n_points, B]`` over ``fractions``, one value per sample.

    Example:
        >>> area_under_curve(torch.tensor([0.0, 1.0]), torch.tensor([[1.0], [0.0]]))
        tensor([0.5000])
    """
    if curve.dim() != 2 or fractions.dim() != 1 or curve.shape[0] != fractions.shape[0]:
        raise ValueError(f"area_under_curve needs curve [n_points, B] and fractions [n_points]; got curve "
                         f"{tuple(curve.shape)} and fractions {tuple(fractions.shape)}")
    return torch.trapezoid(curve, fractions.to(curve.dtype), dim=0)


def _per_sample(values, mask) -> list[torch.Tensor]:
    """Each sample's real-token entries, concatenated over feature keys (tensors or dicts)."""
    if isinstance(values, torch.Tensor):
        values, mask = {"_": values}, {"_": mask}
    rows = [[] for _ in range(len(next(iter(values.values()))))]
    for key, value in values.items():
        keep = mask[key].bool().cpu()
        while keep.dim() < value.dim():
            keep = keep.unsqueeze(-1)
        keep = keep.expand(value.shape)
        for i, row in enumerate(rows):
            row.append(value[i].detach().double().cpu()[keep[i]])
    return [torch.cat(row) for row in rows]


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks, tied values sharing their average rank."""
    _, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()
    return ((last - counts + 1 + last) / 2)[inverse]


def signal_recovery(attributions, ground_truth, mask, use_absolute: bool = False, per_key: bool = False) -> dict:
    """AUROC and precision@k of scores against planted 0/1 ground truth over real tokens.

    k is each sample's number of ground-truth tokens. Samples without a positive or a
    negative token give NaN and are left out of the means. Signed scores count as they
    are (strong negative evidence is not "recovered"); ``use_absolute=True`` ranks by
    magnitude. A sample's tokens are ranked across all feature keys together;
    ``per_key=True`` ranks within each key and averages the keys that can be scored,
    which is fairer to methods normalised per key (rollout sums to 1 per key).
    Returns the means ``auroc``, ``precision_at_k`` and ``[B]`` tensors
    ``auroc_per_sample``, ``precision_per_sample``.

    Example:
        >>> gt = torch.tensor([[1, 0, 0, 0]])
        >>> signal_recovery(gt.float(), gt, torch.ones(1, 4))["auroc"]
        1.0
    """
    if per_key and isinstance(attributions, dict):
        keys = [signal_recovery(attributions[k], ground_truth[k], mask[k], use_absolute) for k in attributions]
        auroc = torch.stack([key["auroc_per_sample"] for key in keys]).nanmean(0)
        precision = torch.stack([key["precision_per_sample"] for key in keys]).nanmean(0)
    else:
        aurocs, precisions = [], []
        for score, truth in zip(_per_sample(attributions, mask), _per_sample(ground_truth, mask)):
            score, truth = (score.abs() if use_absolute else score), truth > 0
            n_pos, n_neg = int(truth.sum()), int((~truth).sum())
            # Mann-Whitney: AUROC from the rank sum of the positives.
            rank_sum = _average_ranks(score)[truth].sum().item()
            aurocs.append((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg) if n_pos and n_neg else math.nan)
            top = score.argsort(descending=True, stable=True)[:n_pos]
            precisions.append(truth[top].double().mean().item() if n_pos else math.nan)
        auroc, precision = torch.tensor(aurocs, dtype=torch.float64), torch.tensor(precisions, dtype=torch.float64)
    return {"auroc": auroc.nanmean().item(), "precision_at_k": precision.nanmean().item(),
            "auroc_per_sample": auroc, "precision_per_sample": precision}


def rank_correlation(a, b, mask) -> torch.Tensor:
    """Spearman correlation ``[B]`` over real tokens; ties get average ranks, constant rows NaN.

    Example:
        >>> x = torch.tensor([[1.0, 2.0, 3.0]])
        >>> rank_correlation(x, x.flip(-1), torch.ones(1, 3))
        tensor([-1.], dtype=torch.float64)
    """
    out = []
    for x, y in zip(_per_sample(a, mask), _per_sample(b, mask)):
        rx, ry = _average_ranks(x), _average_ranks(y)
        rx, ry = rx - rx.mean(), ry - ry.mean()
        denom = (rx.square().sum() * ry.square().sum()).sqrt()
        out.append((rx * ry).sum() / denom if denom > 0 else torch.tensor(math.nan, dtype=torch.float64))
    return torch.stack(out)


def method_agreement(attributions_by_method: dict, mask) -> pd.DataFrame:
    """Pairwise mean Spearman between methods: symmetric, ones on the diagonal.

    Example:
        >>> from ehrexplain import AttentionRollout, CheferRelevance
        >>> scores = {"rollout": AttentionRollout(model).attribute(**batch),
        ...           "chefer": CheferRelevance(model).attribute(**batch)}
        >>> table = method_agreement(scores, unpack_batch(model, batch).masks)
        >>> table.index.tolist(), table.values.diagonal().tolist(), bool((table == table.T).all().all())
        (['rollout', 'chefer'], [1.0, 1.0], True)
    """
    names = list(attributions_by_method)
    table = pd.DataFrame(1.0, index=names, columns=names)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            rho = rank_correlation(attributions_by_method[first], attributions_by_method[second], mask)
            table.loc[first, second] = table.loc[second, first] = rho.nanmean().item()
    return table


@dataclass
class RandomizationResult:
    """Outcome of :func:`randomization_check`; ``passed`` is ``mean_spearman < threshold``.

    ``passed=False`` flags a method whose explanations barely change when the
    model's weights are destroyed. ``per_sample`` holds ``[B]`` correlations.
    """

    mean_spearman: float
    per_sample: torch.Tensor
    passed: bool
    threshold: float
    seed: int = 0
    generator_seed: int = 0


def randomization_generator_seed(seed: int) -> int:
    """The seed the random copy's weights are drawn with: a 63-bit hash of ``seed``, never ``seed`` itself.

    A user who ran ``torch.manual_seed(0)`` before building the model would otherwise get a "random"
    copy equal to the model's own initial weights at ``seed=0``.

    Example:
        >>> randomization_generator_seed(0) != 0 and randomization_generator_seed(0) == randomization_generator_seed(0)
        True
    """
    digest = hashlib.sha256(f"ehrexplain.randomization_check:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _randomized_copy(model, seed: int):
    """Deep copy (sharing the dataset) with every parameter re-drawn; also returns the copy memo.

    Layers re-draw with their own ``reset_parameters`` (which take no generator), so the default generator
    is forked (the caller's state comes back untouched) and seeded with ``randomization_generator_seed(seed)``.
    """
    memo = {id(model.dataset): model.dataset} if hasattr(model, "dataset") else {}
    clone = copy.deepcopy(model, memo)
    devices = sorted({p.device.index or 0 for p in clone.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices), torch.no_grad():  # the caller's RNG stays as it was
        torch.manual_seed(randomization_generator_seed(seed))
        for module in clone.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()  # the layer's own initial distribution
                continue
            for param in module.parameters(recurse=False):  # no initialiser: Gaussian at the trained scale
                param.normal_(0.0, max(param.std().item() if param.numel() > 1 else 0.0, 0.02))
    return clone, memo


def randomized_copy(model, seed: int = 0):
    """The random copy ``randomization_check(..., seed=seed)`` explains: ``model`` deep-copied, every weight re-drawn.

    ``model`` and the caller's random generator are left untouched, so the copy is the same at every call.

    Example:
        >>> from ehrexplain import make_interpreter
        >>> random_model = randomized_copy(model, seed=0)
        >>> random_model is model, random_model.dataset is model.dataset   # a copy; the dataset is shared
        (False, True)
        >>> again = randomized_copy(model, seed=0)
        >>> all(torch.equal(p, q) for p, q in zip(again.parameters(), random_model.parameters()))
        True
        >>> randomized = make_interpreter("rollout", random_model).attribute(**batch)  # "randomized attributions"
    """
    return _randomized_copy(model, seed)[0]


def _build(method, model, options: dict):
    from ..methods import make_interpreter

    return make_interpreter(method, model, **options) if isinstance(method, str) else method


def randomization_check(model, method, batch: dict, seed: int = 0, threshold: float = 0.5, **options) -> RandomizationResult:
    """Model-randomization sanity check (Adebayo et al. 2018); ``model`` is left untouched.

    Re-initialises a deep copy of ``model`` (weights drawn with ``randomization_generator_seed(seed)``,
    recorded in the result with ``seed``) and correlates, per sample, the
    scores on the trained and the random model (Spearman). ``method`` is a name from
    ``METHODS`` (built with ``options``) or an interpreter, deep-copied onto the copy.

    Example:
        >>> randomization_check(model, "chefer", batch).passed     # Chefer's scores change with the weights
        True
        >>> randomization_check(model, "rollout", batch).passed    # rollout's barely do: flagged
        False
    """
    interpreter, target = _build(method, model, options), predict(model, batch)[1]
    random_model, memo = _randomized_copy(model, seed)
    # The memo maps the model to its copy, so a copied interpreter explains the random model.
    random_interpreter = _build(method, random_model, options) if isinstance(method, str) else copy.deepcopy(interpreter, memo)
    fb = unpack_batch(model, batch)
    scores = []
    for name, explainer in (("attributions", interpreter), ("randomized attributions", random_interpreter)):
        scores.append(explainer.attribute(target_class_idx=target, **batch))
        check_attributions(fb, scores[-1], name)
    rho = rank_correlation(*({k: s[k] for k in fb.values} for s in scores), fb.masks)
    mean = rho.nanmean().item()
    return RandomizationResult(mean, rho, bool(mean < threshold), threshold, int(seed), randomization_generator_seed(seed))


def _batch_metrics(model, batch, interpreter, target, ground_truth, ks, n_points, use_absolute) -> dict:
    """Per-sample metric tensors of one method on one batch, plus ``seconds`` in ``attribute``."""
    start = time.perf_counter()
    scores = interpreter.attribute(target_class_idx=target, **batch)
    out = {"seconds": torch.tensor([time.perf_counter() - start], dtype=torch.float64)}
    pert = Perturber(model, batch, scores)  # one ranking and one full-input forward for all four metrics
    out["comprehensiveness"] = _comprehensiveness(pert, ks)
    out["sufficiency"] = _sufficiency(pert, ks)
    out["deletion_auc"] = area_under_curve(*_curve(pert, n_points, insertion=False))
    out["insertion_auc"] = area_under_curve(*_curve(pert, n_points, insertion=True))
    if ground_truth is not None:
        fb, truth = pert.fb, ground_truth(batch)
        check_attributions(fb, truth, "ground_truth")
        recovery = signal_recovery(
            {k: scores[k] for k in fb.values}, {k: truth[k] for k in fb.values}, fb.masks, use_absolute=use_absolute
        )
        out["recovery_auroc"], out["precision_at_k"] = recovery["auroc_per_sample"], recovery["precision_per_sample"]
    return out


def compare(model, loader, methods: Sequence = ("rollout", "chefer", "integrated_gradients", "deeplift"), *,
            ground_truth: Optional[Callable[[dict], dict]] = None, percentages: Sequence[float] = PERCENTAGES,
            method_options: Optional[dict] = None, progress: bool = True, max_batches: Optional[int] = None,
            n_points: int = 11, seed: int = 0, use_absolute: bool = False) -> pd.DataFrame:
    """Evaluate several methods on the same batches: one row per method.

    Columns are means over samples: ``comprehensiveness``, ``sufficiency``,
    ``deletion_auc``, ``insertion_auc``, then ``recovery_auroc`` and
    ``precision_at_k`` when ``ground_truth(batch) -> {key: 0/1 tensor}`` is
    given, ``randomization_spearman`` and ``randomization_passed`` (the sanity
    check on the first batch; ``False`` flags a method that ignores the model's
    weights) and ``seconds``
    (total time in ``attribute``). ``methods`` holds names from ``METHODS``
    (options from ``method_options[name]``) or built interpreters; the index
    is named ``method``. ``use_absolute`` ranks signed scores by magnitude for
    recovery (a protective code with a large negative score then counts as found).

    Example:
        >>> table = compare(model, cohort, ["rollout", "chefer"], max_batches=1, progress=False)
        >>> table.index.tolist(), bool(table.loc["chefer", "randomization_passed"])
        (['rollout', 'chefer'], True)
        >>> table.columns.tolist()  # a Cohort brings its ground truth: recovery  # doctest: +NORMALIZE_WHITESPACE
        ['comprehensiveness', 'sufficiency', 'deletion_auc', 'insertion_auc', 'recovery_auroc', 'precision_at_k',
         'randomization_spearman', 'randomization_passed', 'seconds']
    """
    ks = _check_percentages(percentages)
    _check_n_points(n_points)
    if is_patient_data(loader):  # a SampleDataset, a Cohort (its ground truth comes along), a PatientSource
        source = as_source(loader)
        loader, ground_truth = source.loader(), ground_truth or source.ground_truth
    _check_methods(methods)
    options = {m: (method_options or {}).get(m, {}) if isinstance(m, str) else {} for m in methods}
    built = _built_interpreters(model, methods, options)
    columns, first = _evaluate_batches(model, loader, built, ground_truth, ks, n_points, use_absolute, progress, max_batches)
    rows = {name: {**_aggregate(columns[name]), **_sanity_check(model, method, interpreter, first, seed, options[method])}
            for name, (method, interpreter) in built.items()}  # fmt: skip
    order = ["comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc"]
    order += ["recovery_auroc", "precision_at_k"] if ground_truth is not None else []
    table = pd.DataFrame.from_dict(rows, orient="index")[order + ["randomization_spearman", "randomization_passed", "seconds"]]
    return table.rename_axis("method")


def _check_methods(methods) -> None:
    """``methods`` is a non-empty list of known method names or interpreters."""
    from ..methods import METHODS

    if isinstance(methods, str) or not isinstance(methods, Sequence):
        raise TypeError(f"methods must be a list of method names or interpreters, got {methods!r}")
    if not methods:
        raise ValueError(f"methods is empty; pass at least one of {sorted(METHODS)} or an interpreter")
    unknown = [m for m in methods if isinstance(m, str) and m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(METHODS)} or pass interpreters")


def _built_interpreters(model, methods, options: dict) -> dict:
    """Per column name, ``(method as given, interpreter)``: the one place ``compare`` builds interpreters."""
    return {m if isinstance(m, str) else type(m).__name__: (m, _build(m, model, options[m])) for m in methods}


def _evaluate_batches(model, loader, built, ground_truth, ks, n_points, use_absolute, progress, max_batches):
    """``({name: {column: [sum, count]}}, first batch)`` over the loader's first ``max_batches``.

    Only running sums are kept: memory does not grow with the cohort, whose batches pass one at a time.
    """
    columns = {name: {} for name in built}
    total = len(loader) if hasattr(loader, "__len__") else None
    if max_batches is not None:
        total = max_batches if total is None else min(total, max_batches)
    first = None
    for n, batch in enumerate(tqdm(loader, total=total, disable=not progress, desc="evaluating")):
        if max_batches is not None and n >= max_batches:
            break
        first = batch if first is None else first
        target = predict(model, batch)[1]  # fixed once per batch, shared by all methods
        for name, (_, interpreter) in built.items():
            metrics = _batch_metrics(model, batch, interpreter, target, ground_truth, ks, n_points, use_absolute)
            _add(columns[name], metrics)
    if first is None:
        raise ValueError("the loader yielded no batches; nothing to evaluate")
    return columns, first


def _sanity_check(model, method, interpreter, batch, seed: int, options: dict) -> dict:
    """The randomisation check's two columns for one method, on ``batch``."""
    check = randomization_check(model, method if isinstance(method, str) else interpreter, batch, seed, **options)
    return {"randomization_spearman": check.mean_spearman, "randomization_passed": check.passed}


def _add(totals: dict, metrics: dict) -> None:
    """Add one batch's per-sample values to each column's running ``[sum, count]`` (NaN left out).

    Example:
        >>> totals = {}
        >>> _add(totals, {"sufficiency": torch.tensor([0.5, math.nan])}); _add(totals, {"sufficiency": torch.tensor([1.0])})
        >>> totals
        {'sufficiency': [1.5, 2]}
    """
    for column, values in metrics.items():
        known = values[~values.isnan()].double()
        total = totals.setdefault(column, [0.0, 0])
        total[0] += known.sum().item()
        total[1] += len(known)


def _aggregate(columns: dict) -> dict:
    """Per column, the mean over samples (NaN ignored); ``seconds`` is summed.

    Example:
        >>> _aggregate({"sufficiency": [1.5, 2], "recovery_auroc": [0.0, 0], "seconds": [3.0, 2]})
        {'sufficiency': 0.75, 'recovery_auroc': nan, 'seconds': 3.0}
    """
    row = {column: total / count if count else math.nan for column, (total, count) in columns.items()}
    row["seconds"] = columns["seconds"][0]
    return row

__all__ = ["PERCENTAGES", "RandomizationResult", "area_under_curve", "compare", "comprehensiveness", "deletion_curve",
           "insertion_curve", "method_agreement", "randomization_check", "randomization_generator_seed",
           "randomized_copy", "rank_correlation", "signal_recovery", "sufficiency"]
