"""Cohort-level figures: the global importance of codes, with bootstrap intervals.

Example:
    >>> import pandas as pd
    >>> from ehrexplain.global_importance import global_importance
    >>> rows = pd.DataFrame({"sample": [0, 1], "feature": "drugs", "code": ["A10BA02", "A10BA02"], "score": [1.0, 2.0]})
    >>> fig = plot_global_importance(global_importance(rows), names={"A10BA02": "metformin"})
    >>> fig.axes[0].get_yticklabels()[0].get_text()
    'A10BA02 — metformin'
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .plots import _draw_bars, _figure_and_axes, _ground_truth_mask, _label

AXIS_LABELS = {
    "mean_abs_score": "mean |attribution| over the samples with the code",
    "mean_score": "mean attribution over the samples with the code (signed)",
}


def plot_global_importance(table, top_k: int = 15, names: Mapping | None = None, ground_truth=None, ax=None, title=None):
    """Bars of the ``top_k`` codes of a :func:`global_importance` table: interval error bars, support, shrunk score.

    Args:
        table: the DataFrame returned by ``global_importance`` (sorted by rank).
        top_k: number of codes to show.
        names: optional ``{code: readable name}``; labels read "code — name".
        ground_truth: optional set of codes known to drive the label (bold labels).
        ax: matplotlib axes to draw into; a new Figure when ``None``.
        title: figure title (default names the ranking column and the cohort size).

    Returns:
        The matplotlib Figure.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    missing = [c for c in ("code", "rank", "ci_low", "ci_high") if c not in getattr(table, "columns", ())]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; pass the DataFrame returned by global_importance()")
    column = table.attrs.get("rank_by", "mean_abs_score")
    top = table.sort_values("rank").head(top_k)
    fig, ax = _figure_and_axes(ax, figsize=(7, 0.35 * len(top) + 1.2))
    codes = top["code"].tolist()
    truth = _ground_truth_mask(codes, set(ground_truth) if ground_truth is not None else None)
    values = top[column].to_numpy(dtype=float)
    _draw_bars(ax, [_label(c, names, t) for c, t in zip(codes, truth)], values, truth, signed=column == "mean_score")
    errors = np.vstack([values - top["ci_low"].to_numpy(), top["ci_high"].to_numpy() - values])
    shown = np.isfinite(errors).all(axis=0)  # a code seen once has no interval: none is drawn
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    handles = []  # the ★ of the labels has its own legend (drawn with the bars)
    if shown.any():
        handles.append(ax.errorbar(values[shown], np.arange(len(top))[shown], xerr=np.clip(errors[:, shown], 0, None),
                                   fmt="none", ecolor="black", capsize=3, label="bootstrap interval of the mean"))
    if "shrunk_score" in top.columns:
        handles += ax.plot(top["shrunk_score"].to_numpy(dtype=float), np.arange(len(top)), "k|", markersize=12,
                           label="shrunk score (sets the rank)")
    if handles and isinstance(ax.figure.get_layout_engine(), ConstrainedLayoutEngine):  # under the axes, off the bars
        ax.figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize="small")
    elif handles:  # inside the axes, with the ★ entry the bars may have put there
        kept = list(ax.get_legend().legend_handles) if ax.get_legend() else []
        ax.legend(handles=kept + handles, loc="best", fontsize="small")
    if "n_samples" in top.columns:
        for y, n in enumerate(top["n_samples"]):  # the support, right of the axes
            ax.annotate(f"n = {n}", (1, y), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize="small")
    ax.set_xlabel(AXIS_LABELS.get(column, column))
    ax.set_ylabel("code")
    ranking = table.attrs.get("ranking", f"by {column}")
    ax.set_title(title or f"Global importance: top {len(top)} codes {ranking}\n(bars: mean with bootstrap interval;"
                          " n: samples with the code)", fontsize="medium")
    return fig
