"""From per-sample attributions to a cohort-level ranking of codes, and its stability.

A code's global importance is the mean, over the samples that have it, of the
score the sample gives it (its positions summed). A seeded bootstrap over those
samples gives an interval for that mean. :func:`ranking_stability` compares the
rankings of models trained with different seeds: per-patient attention
explanations of clinical models are known to change with the initialisation,
so a ranking is only worth reading if it survives a reseed.

Example:
    >>> import tempfile
    >>> from ehrexplain.cohort import explain_cohort, read_attributions
    >>> out = explain_cohort(model, cohort.dataset, "deeplift", out=tempfile.mkdtemp(), progress=False)
    >>> table = global_importance(read_attributions(out))
    >>> table.columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
    ['feature', 'code', 'n_samples', 'n_patients', 'mean_score', 'mean_abs_score', 'shrunk_score', 'rank',
     'ci_low', 'ci_high']
    >>> set(cohort.rule.risk_codes) <= set(table.code[:5])   # the three planted risk codes rank in the top five
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RANK_COLUMNS = ("mean_abs_score", "mean_score")
NEEDED = ("sample", "feature", "code", "score")


def global_importance(
    attributions, rank_by: str = "mean_abs_score", n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
    min_samples: int = 1, prior_samples: float = 5.0,
) -> pd.DataFrame:
    """One row per (feature, code): how much, and how surely, it drives the model.

    A code seen in one or two samples can reach any mean by chance, so codes are ranked by
    ``shrunk_score = mean * n / (n + prior_samples)``, the ``rank_by`` mean of its ``n`` samples shrunk
    toward 0 as if ``prior_samples`` more samples had scored it 0 (the posterior mean under a normal prior
    centred at 0 worth that many samples): a code needs ``prior_samples`` samples to keep half its mean.
    ``table.attrs["ranking"]`` says how the table was ranked.

    Args:
        attributions: a DataFrame from :func:`ehrexplain.cohort.read_attributions`
            or the directory :func:`~ehrexplain.cohort.explain_cohort` wrote.
        rank_by: ``"mean_abs_score"`` (default: strength either way) or ``"mean_score"``.
        n_bootstrap: bootstrap resamples of each code's samples.
        confidence: coverage of the percentile interval ``[ci_low, ci_high]`` of the
            ``rank_by`` column (NaN for a code seen in one sample: one value gives no interval).
        seed: seeds the bootstrap.
        min_samples: codes seen in fewer samples are left out (their number is in
            ``table.attrs["n_codes_below_min_samples"]``).
        prior_samples: the shrinkage's weight, in samples (default 5); 0 ranks by the raw ``rank_by`` mean.

    Returns:
        Columns ``feature, code, n_samples`` (the code's support), ``n_patients`` (when the rows have
        ``patient_id``), ``mean_score, mean_abs_score, shrunk_score, rank, ci_low, ci_high``, sorted by
        ``rank`` (1 = most important).

    Raises:
        ValueError: a score is NaN (the rows are named), or a bad option.

    Example:
        >>> rows = pd.DataFrame({"sample": [0, 0, 1], "feature": "drugs", "code": ["A", "B", "A"],
        ...                      "score": [1.0, -0.5, 3.0]})
        >>> global_importance(rows, prior_samples=0)[["code", "n_samples", "mean_score", "rank"]].values.tolist()
        [['A', 2, 2.0, 1], ['B', 1, -0.5, 2]]
    """
    frame = _attribution_frame(attributions)
    if rank_by not in RANK_COLUMNS:
        raise ValueError(f"rank_by must be one of {RANK_COLUMNS}, got {rank_by!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise ValueError(f"min_samples must be a positive integer, got {min_samples!r}")
    if isinstance(prior_samples, bool) or not isinstance(prior_samples, (int, float)) or not prior_samples >= 0:
        raise ValueError(f"prior_samples must be a number >= 0, got {prior_samples!r}")
    per_sample = frame.groupby(["feature", "code", "sample"], sort=True)["score"].sum().reset_index()
    per_sample["abs_score"] = per_sample["score"].abs()
    column = "score" if rank_by == "mean_score" else "abs_score"
    rng = np.random.default_rng(seed)
    rows = []
    for (feature, code), group in per_sample.groupby(["feature", "code"], sort=True):
        low, high = _bootstrap_interval(group[column].to_numpy(), n_bootstrap, confidence, rng)
        rows.append((feature, code, len(group), group["score"].mean(), group["abs_score"].mean(), low, high))
    table = pd.DataFrame(rows, columns=["feature", "code", "n_samples", "mean_score", "mean_abs_score", "ci_low", "ci_high"])
    table.insert(5, "shrunk_score", table[rank_by] * table["n_samples"] / (table["n_samples"] + prior_samples))
    if "patient_id" in frame.columns:
        patients = frame.groupby(["feature", "code"], sort=True)["patient_id"].nunique()
        table.insert(3, "n_patients", patients.to_numpy())
    kept = table["n_samples"] >= min_samples
    table = table[kept]
    order_by = "shrunk_score" if prior_samples > 0 else rank_by
    table = table.sort_values([order_by, "feature", "code"], ascending=[False, True, True], ignore_index=True)
    table.insert(table.columns.get_loc("shrunk_score") + 1, "rank", np.arange(1, len(table) + 1))
    table.attrs.update(rank_by=rank_by, prior_samples=prior_samples, min_samples=min_samples,
                       n_codes_below_min_samples=int((~kept).sum()))
    table.attrs["ranking"] = (
        f"by {rank_by} shrunk toward 0: mean * n / (n + {prior_samples:g})" if prior_samples > 0
        else f"by {rank_by}, not shrunk"
    ) + (f", codes in at least {min_samples} samples" if min_samples > 1 else "")
    return table


def _attribution_frame(attributions) -> pd.DataFrame:
    if not isinstance(attributions, pd.DataFrame):
        from .explain import read_attributions

        attributions = read_attributions(attributions)
    missing = [name for name in NEEDED if name not in attributions.columns]
    if missing:
        raise ValueError(f"attributions lack column(s) {missing}; pass read_attributions(out) or its directory")
    if attributions.empty:
        raise ValueError("attributions are empty: there is nothing to rank")
    bad = attributions[attributions["score"].isna()]
    if len(bad):
        named = ", ".join(f"{r.feature} {r.code!r} (sample {r.sample})" for r in bad.head(5).itertuples())
        raise ValueError(f"{len(bad)} attribution score(s) are NaN, e.g. {named}: a NaN would be summed as 0 "
                         "and shift the means; explain those samples again or drop their rows")
    return attributions


def _bootstrap_interval(values: np.ndarray, n_bootstrap: int, confidence: float, rng) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` over ``n_bootstrap`` resamples; NaN for a single value."""
    if len(values) < 2:
        return float("nan"), float("nan")
    draws = rng.integers(0, len(values), size=(n_bootstrap, len(values)))
    means = values[draws].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class RankingStability:
    """How well the global rankings of several models agree.

    Attributes:
        correlations: Spearman correlation of every pair of rankings (label x label),
            over the codes every table ranks.
        mean, minimum: over the distinct pairs (off the diagonal).
        n_codes: number of codes compared.
    """

    correlations: pd.DataFrame
    mean: float
    minimum: float
    n_codes: int


def ranking_stability(tables) -> RankingStability:
    """Spearman agreement between global rankings, e.g. of models trained with different seeds.

    Args:
        tables: ``{label: global_importance table}`` (e.g. ``{seed: table}``) or a
            list of tables (labelled 0, 1, ...); at least two.

    Example:
        >>> rows = lambda s: pd.DataFrame({"sample": [0, 0, 0], "feature": "f", "code": list("abc"), "score": s})
        >>> tables = {0: global_importance(rows([3.0, 2.0, 1.0])), 1: global_importance(rows([1.0, 2.0, 3.0]))}
        >>> ranking_stability(tables).mean
        -1.0
    """
    if not isinstance(tables, dict):
        tables = dict(enumerate(tables))
    if len(tables) < 2:
        raise ValueError(f"ranking_stability needs at least two tables, got {len(tables)}")
    columns = {}
    for label, table in tables.items():
        if not isinstance(table, pd.DataFrame) or "rank" not in table.columns:
            raise TypeError(f"tables[{label!r}] must be a global_importance() DataFrame, got {type(table).__name__}")
        columns[label] = table.set_index(["feature", "code"])["rank"]
    ranks = pd.DataFrame(columns).dropna()
    if len(ranks) < 3:
        raise ValueError(f"only {len(ranks)} code(s) are ranked in every table; a correlation needs at least 3")
    correlations = ranks.corr(method="spearman")
    pairs = correlations.to_numpy()[np.triu_indices(len(tables), k=1)]
    return RankingStability(correlations, float(pairs.mean()), float(pairs.min()), len(ranks))
