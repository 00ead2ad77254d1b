"""Whole cohorts: resumable Parquet parts (:mod:`.explain`), their rows (:mod:`.table`), Dask workers
(:mod:`.cluster`) and a global per-code ranking (:mod:`.global_importance`).

Example:
    >>> from ehrexplain.cohort import explain_cohort, global_importance, read_attributions
    >>> callable(explain_cohort) and callable(read_attributions) and callable(global_importance)
    True
"""

from .cluster import local_client
from .explain import explain_cohort, read_attributions
from .global_importance import RankingStability, global_importance, ranking_stability

__all__ = ["explain_cohort", "read_attributions", "local_client", "global_importance", "ranking_stability",
           "RankingStability"]
