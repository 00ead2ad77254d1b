"""Static matplotlib views of attributions, attention and faithfulness checks.

Every function is pure: it takes numbers and strings (lists, numpy arrays or torch
tensors), draws onto ``ax`` when one is given or onto a new
:class:`matplotlib.figure.Figure` otherwise, and returns the Figure. Nothing calls
``plt.show``; a notebook displays the returned Figure when it is the cell's value.

Colours follow one rule everywhere: red pushes the prediction up (positive score),
blue pushes it down (negative score); unsigned importances use one neutral colour.

Example:
    >>> from ehrexplain.viz import plot_code_attributions
    >>> fig = plot_code_attributions(["C01", "C02"], [0.8, -0.3], names={"C01": "sepsis"})
    >>> [round(float(p.get_width()), 1) for p in fig.axes[0].patches]
    [0.8, -0.3]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

POSITIVE_COLOR = "#d62728"  # red: raises the prediction
NEGATIVE_COLOR = "#1f77b4"  # blue: lowers the prediction
UNSIGNED_COLOR = "#7f7f7f"  # grey: importance without a direction
GROUND_TRUTH_MARK = "★"
ABSENT_COLOR = "#d9d9d9"  # light grey: a timeline cell whose code the visit does not hold


# --------------------------------------------------------------------------- helpers
def _to_numpy(values, name: str = "values") -> np.ndarray:
    """Convert a torch tensor, numpy array or (nested, rectangular) list to float64."""
    if hasattr(values, "detach"):  # torch tensor; avoids importing torch here
        values = values.detach().cpu().numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        kind = type(values).__name__
        raise TypeError(f"{name} must be numbers (list, numpy array or torch tensor); got {kind}") from err


def _check_same_length(name_a: str, a, name_b: str, b) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} has length {len(a)} but {name_b} has length {len(b)}; pass one score per code.")


def _figure_and_axes(ax, figsize):
    """Return ``(figure, ax)``: the given ax and its figure, or a new Figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure  # lazy: importing this module stays cheap

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _is_signed(scores: np.ndarray, signed: bool | None) -> bool:
    return bool(np.any(scores < 0)) if signed is None else bool(signed)


def _ground_truth_mask(codes: Sequence[str], ground_truth) -> np.ndarray:
    """Boolean mask over ``codes``: a set/list of codes, or a 0/1 sequence aligned with codes."""
    if ground_truth is None:
        return np.zeros(len(codes), dtype=bool)
    if isinstance(ground_truth, (set, frozenset)):
        return np.array([code in ground_truth for code in codes], dtype=bool)
    items = list(ground_truth.detach().cpu().tolist() if hasattr(ground_truth, "detach") else ground_truth)
    if items and all(isinstance(x, (bool, int, float, np.number, np.bool_)) for x in items):
        _check_same_length("ground_truth", items, "codes", codes)
        return np.asarray(items, dtype=float) != 0
    return np.array([code in set(items) for code in codes], dtype=bool)


def _label(code, names: Mapping | None, is_truth: bool = False) -> str:
    text = str(code)
    if names and code in names:
        text = f"{text} — {names[code]}"
    return f"{GROUND_TRUTH_MARK} {text}" if is_truth else text


def _bar_colors(values: np.ndarray, signed: bool) -> list[str]:
    if not signed:
        return [UNSIGNED_COLOR] * len(values)
    return [POSITIVE_COLOR if v >= 0 else NEGATIVE_COLOR for v in values]


def _draw_bars(ax, labels, values, truth, signed, show_labels=True, legend=True) -> None:
    """Horizontal bars, first value on top, ground-truth labels in bold (``legend``: say what ★ means)."""
    y = np.arange(len(values))
    ax.barh(y, values, color=_bar_colors(values, signed))
    if show_labels:
        ax.set_yticks(y, labels)
        for tick, is_truth in zip(ax.get_yticklabels(), truth):
            tick.set_fontweight("bold" if is_truth else "normal")
    else:  # a panel sharing its y axis with a labelled one
        ax.tick_params(axis="y", labelleft=False)
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    if signed:
        ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("attribution (red raises, blue lowers the prediction)" if signed else "importance")
    if legend and show_labels and np.any(truth):
        _ground_truth_legend(ax)


#: The legend entry that says what the ★ in front of a label means.
GROUND_TRUTH_LEGEND = "planted driver, the ground truth (bold label)"


def _ground_truth_marker():
    """The legend handle naming the ★ marker (labels carry it; the legend says what it means)."""
    from matplotlib.lines import Line2D

    return Line2D([], [], linestyle="none", marker=f"${GROUND_TRUTH_MARK}$", color="black", label=GROUND_TRUTH_LEGEND)


def _ground_truth_legend(ax) -> None:
    """A legend naming the ★ marker."""
    _legend_below(ax, [_ground_truth_marker()])


def _legend_below(ax, handles) -> None:
    """A legend under the figure, clear of ticks, bars and a suptitle; inside the axes without constrained layout."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    if isinstance(ax.figure.get_layout_engine(), ConstrainedLayoutEngine):
        ax.figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False,
                         fontsize="small")
    else:
        ax.legend(handles=handles, loc="best", fontsize="small")


# --------------------------------------------------------------------------- bars
def plot_code_attributions(
    codes, scores, *, names=None, ground_truth=None, signed=None, title=None, top_k=None, ax=None
):
    """Bar chart of one patient's code attributions, largest ``|score|`` on top.

    Args:
        codes: The patient's codes, one per score.
        scores: One attribution per code (list, numpy array or torch tensor).
        names: Optional ``{code: readable name}``; labels read "code — name".
        ground_truth: Codes known to matter (a set of codes, or a 0/1 sequence aligned
            with ``codes``); their labels get a "★" prefix and bold type.
        signed: Colour by sign (red positive, blue negative). ``None``: signed when any
            score is negative.
        title: Axes title.
        top_k: Show only the ``top_k`` largest ``|score|``.
        ax: Axes to draw into; a new Figure when ``None``.

    Returns:
        The Figure holding the chart.

    Example:
        >>> fig = plot_code_attributions(["C01", "C07", "C02"], [0.9, -0.2, 0.4],
        ...                              ground_truth={"C01"}, top_k=2)
        >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
        ['★ C01', 'C02']
    """
    codes = list(codes)
    values = _to_numpy(scores, "scores").reshape(-1)
    _check_same_length("codes", codes, "scores", values)
    truth = _ground_truth_mask(codes, ground_truth)
    order = np.argsort(-np.abs(values), kind="stable")[:top_k]
    fig, ax = _figure_and_axes(ax, figsize=(6, 0.6 + 0.35 * len(order)))
    labels = [_label(codes[i], names, truth[i]) for i in order]
    _draw_bars(ax, labels, values[order], truth[order], _is_signed(values, signed))
    if title:
        ax.set_title(title)
    return fig


def plot_method_comparison(codes, scores_by_method, *, names=None, ground_truth=None, signed=None, top_k=None):
    """Side-by-side bar charts, one per method, sharing one code order.

    Codes are ordered by ``|score|`` of the first method, so disagreements between
    methods show up as bars out of order in the other panels.

    Args:
        codes: The patient's codes.
        scores_by_method: ``{method name: scores aligned with codes}``.
        names: Optional ``{code: readable name}``.
        ground_truth: Codes known to matter (set of codes or 0/1 sequence).
        signed: Colour by sign; ``None`` decides per method (any negative score).
        top_k: Keep only the first method's ``top_k`` codes.

    Returns:
        A Figure with one axes per method.

    Example:
        >>> fig = plot_method_comparison(["C01", "C02"], {"IG": [0.9, -0.1], "rollout": [0.6, 0.4]})
        >>> [a.get_title() for a in fig.axes]
        ['IG', 'rollout']
    """
    from matplotlib.figure import Figure

    if not scores_by_method:
        raise ValueError("scores_by_method is empty; pass {method name: scores}.")
    codes = list(codes)
    methods = {m: _to_numpy(s, f"scores of {m!r}").reshape(-1) for m, s in scores_by_method.items()}
    for method, values in methods.items():
        _check_same_length("codes", codes, f"scores of {method!r}", values)
    truth = _ground_truth_mask(codes, ground_truth)
    order = np.argsort(-np.abs(next(iter(methods.values()))), kind="stable")[:top_k]
    labels = [_label(codes[i], names, truth[i]) for i in order]
    fig = Figure(figsize=(2.0 + 3.0 * len(methods), 0.8 + 0.35 * len(order)), layout="constrained")
    axes = fig.subplots(1, len(methods), sharey=True, squeeze=False)[0]
    any_signed = False
    for k, (ax, (method, values)) in enumerate(zip(axes, methods.items())):
        is_signed = _is_signed(values, signed)
        any_signed |= is_signed
        _draw_bars(ax, labels, values[order], truth[order], is_signed, show_labels=k == 0, legend=False)
        ax.set_title(method)
        ax.set_xlabel("attribution" if is_signed else "importance")  # the long legend once, below
    handles = [_ground_truth_marker()] if np.any(truth[order]) else []
    if any_signed:  # one legend for the figure: what ★ and the two colours mean
        from matplotlib.patches import Patch

        handles += [Patch(color=POSITIVE_COLOR, label="signed panels: raises the prediction"),
                    Patch(color=NEGATIVE_COLOR, label="lowers it")]
    if handles:
        _legend_below(axes[0], handles)
    return fig


# --------------------------------------------------------------------------- heat maps
def _timeline_matrix(visits, scores):
    """Rows = distinct codes (first-seen order), columns = visits; NaN where a code is absent."""
    visits = [list(v) for v in visits]
    _check_same_length("visits", visits, "scores", scores)
    padded = hasattr(scores, "shape") and len(scores.shape) == 2  # 2-D visits x max codes
    rows = _to_numpy(scores, "scores") if padded else [_to_numpy(s, "scores").reshape(-1) for s in scores]
    codes = list(dict.fromkeys(code for visit in visits for code in visit))
    index = {code: i for i, code in enumerate(codes)}
    matrix = np.full((len(codes), len(visits)), np.nan)
    for t, (visit, row) in enumerate(zip(visits, rows)):
        if len(row) < len(visit) or (not padded and len(row) != len(visit)):
            raise ValueError(f"visit {t} has {len(visit)} codes but {len(row)} scores; scores must mirror visits.")
        for code, value in zip(visit, row):
            cell = matrix[index[code], t]
            matrix[index[code], t] = value if np.isnan(cell) else cell + value  # repeated code: sum
    return codes, matrix


def plot_patient_timeline(visits, scores, *, names=None, signed=None, title=None, ax=None):
    """Heat map of attributions over a patient's visits (rows: codes, columns: visits).

    Args:
        visits: List of visits, each a list of codes.
        scores: Same nested shape as ``visits``, or a 2-D array ``[visits, max codes]``
            padded on the right.
        names: Optional ``{code: readable name}``.
        signed: Diverging red/blue colormap centred at 0; ``None``: when any score < 0.
        title: Axes title.
        ax: Axes to draw into; a new Figure when ``None``.

    Returns:
        The Figure. Grey cells mean the code was not recorded in that visit (a legend says so).

    Example:
        >>> fig = plot_patient_timeline([["C01", "C02"], ["C01"]], [[0.5, -0.1], [0.9]])
        >>> fig.axes[0].images[0].get_array().shape
        (2, 2)
    """
    codes, matrix = _timeline_matrix(visits, scores)
    labels = [_label(code, names) for code in codes]
    width = 2.0 + 0.07 * max(map(len, labels), default=0) + 0.45 * matrix.shape[1]
    fig, ax = _figure_and_axes(ax, figsize=(width, 1.2 + 0.35 * len(codes)))
    finite = matrix[~np.isnan(matrix)]
    is_signed = _is_signed(finite, signed)
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    vmax = vmax or 1.0
    cmap, vmin = ("RdBu_r", -vmax) if is_signed else ("Reds", 0.0)
    image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(matrix.shape[1]), [str(t + 1) for t in range(matrix.shape[1])])
    ax.set_xlabel("visit")
    ax.set_yticks(range(len(codes)), labels)
    fig.colorbar(image, ax=ax, label="attribution" if is_signed else "importance")
    if np.isnan(matrix).any():  # absent cells show the axes' background: grey, unlike any score's colour
        from matplotlib.patches import Patch

        ax.set_facecolor(ABSENT_COLOR)
        _legend_below(ax, [Patch(facecolor=ABSENT_COLOR, label="not recorded in that visit")])
    if title:
        ax.set_title(title)
    return fig


def _square(matrix, name: str) -> np.ndarray:
    array = _to_numpy(matrix, name)
    while array.ndim > 2 and array.shape[0] == 1:  # drop batch dimensions of size 1
        array = array[0]
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(f"{name} must be a square [seq, seq] matrix; got shape {array.shape}.")
    return array


def _token_ticks(ax, tokens, size: int, name: str) -> None:
    if tokens is None:
        return
    tokens = [str(t) for t in tokens]
    _check_same_length("tokens", tokens, name, range(size))
    ax.set_xticks(range(size), tokens, rotation=90)
    ax.set_yticks(range(size), tokens)


def plot_rollout_matrix(matrix, *, tokens=None, title="Attention rollout", ax=None,
                        colorbar_label="share of the source token", marked_row=None):
    """Heat map of a ``[seq, seq]`` rollout (or relevance) matrix.

    Row ``i`` shows how much query token ``i`` draws from each source token (columns).

    Args:
        matrix: ``[seq, seq]`` array (a leading batch dimension of 1 is dropped).
        tokens: Optional labels, one per position.
        title: Axes title.
        ax: Axes to draw into; a new Figure when ``None``.
        colorbar_label: what the colours measure (a relevance matrix is not a share).
        marked_row: a row to outline, with a legend entry (the row a model predicts from is the explanation).

    Returns:
        The Figure.

    Example:
        >>> fig = plot_rollout_matrix([[1.0, 0.0], [0.5, 0.5]], tokens=["CLS", "C01"], marked_row=0)
        >>> fig.legends[0].get_texts()[0].get_text()
        'row 0: the explanation'
        >>> fig.axes[0].images[0].get_array().tolist()
        [[1.0, 0.0], [0.5, 0.5]]
    """
    array = _square(matrix, "matrix")
    fig, ax = _figure_and_axes(ax, figsize=(3.0 + 0.6 * len(array), 2.5 + 0.6 * len(array)))
    image = ax.imshow(array, cmap="viridis", vmin=0.0 if array.min() >= 0 else None)
    _token_ticks(ax, tokens, len(array), "matrix rows")
    ax.set_xlabel("source token")
    ax.set_ylabel("query token")
    fig.colorbar(image, ax=ax, label=colorbar_label)
    if marked_row is not None:
        _outline_row(ax, int(marked_row), len(array))
    if title:
        ax.set_title(title)
    return fig


def _outline_row(ax, row: int, size: int) -> None:
    """Outline ``row`` of a heat map in red and name it in a legend."""
    from matplotlib.patches import Rectangle

    outline = Rectangle((-0.5, row - 0.5), size, 1, fill=False, edgecolor="red", linewidth=2.5,
                        label=f"row {row}: the explanation")
    ax.add_patch(outline)
    _legend_below(ax, [outline])


def _attention_layers(attentions) -> list[np.ndarray]:
    """Normalise to a list of ``[heads, seq, seq]`` arrays."""
    if hasattr(attentions, "shape"):  # one array: [seq,seq], [heads,seq,seq] or [layers,heads,seq,seq]
        array = _to_numpy(attentions, "attentions")
        attentions = list(array) if array.ndim == 4 else [array]
    layers = []
    for i, layer in enumerate(attentions):
        array = _to_numpy(layer, f"attentions[{i}]")
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]  # batch of one
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or array.shape[1] != array.shape[2]:
            raise ValueError(f"attentions[{i}] must be [heads, seq, seq] or [seq, seq]; got shape {array.shape}.")
        layers.append(array)
    if not layers:
        raise ValueError("attentions is empty; pass one [heads, seq, seq] array per layer.")
    return layers


def plot_attention_maps(attentions, *, tokens=None, layer_titles=None):
    """Grid of attention heat maps: one row per layer, one column per head.

    Args:
        attentions: List (one per layer) of ``[heads, seq, seq]`` or ``[seq, seq]``
            arrays, or one ``[layers, heads, seq, seq]`` array.
        tokens: Optional labels, one per position.
        layer_titles: Optional row names, one per layer (default "layer 1", ...).

    Returns:
        A Figure with ``layers x max(heads)`` axes (unused cells hidden) and a colorbar.

    Example:
        >>> import numpy as np
        >>> fig = plot_attention_maps([np.full((2, 3, 3), 1 / 3)] * 2)
        >>> sum(1 for a in fig.axes if a.images)
        4
    """
    from matplotlib.figure import Figure

    layers = _attention_layers(attentions)
    titles = list(layer_titles) if layer_titles is not None else [f"layer {i + 1}" for i in range(len(layers))]
    _check_same_length("layer_titles", titles, "attentions", layers)
    n_heads = max(layer.shape[0] for layer in layers)
    vmax = max(float(layer.max()) for layer in layers) or 1.0
    room = 0.075 * max((len(str(t)) for t in tokens), default=0) if tokens is not None else 0.0  # long labels
    fig = Figure(figsize=(0.5 + room + 2.6 * n_heads, 0.3 + room + 2.4 * len(layers)), layout="constrained")
    grid = fig.subplots(len(layers), n_heads, squeeze=False)
    for row, (layer, layer_title) in enumerate(zip(layers, titles)):
        for head in range(n_heads):
            ax = grid[row, head]
            if head >= layer.shape[0]:
                ax.set_axis_off()
                continue
            image = ax.imshow(layer[head], cmap="viridis", vmin=0.0, vmax=vmax)
            _token_ticks(ax, tokens, layer.shape[1], f"attentions[{row}] sequence")
            ax.tick_params(labelleft=head == 0, labelbottom=row == len(layers) - 1)  # token labels on the outer edge
            ax.set_title(f"{layer_title}, head {head + 1}", fontsize="small")
    fig.colorbar(image, ax=grid, label="attention weight", shrink=0.8)
    return fig


# --------------------------------------------------------------------------- curves
def plot_convergence(steps, deltas, *, ax=None, label=None):
    """Log-log plot of ``|convergence delta|`` against the number of integration steps.

    Args:
        steps: Step counts, e.g. ``[8, 16, 32, 64]``.
        deltas: One entry per step count: a scalar, or per-sample deltas (then the mean
            ``|delta|`` is drawn with a min/max band).
        ax: Axes to draw into (call again with the same ax to compare methods).
        label: Legend entry for this line.

    Returns:
        The Figure.

    Example:
        >>> fig = plot_convergence([8, 16, 32], [1e-1, 5e-2, 2.5e-2])
        >>> fig.axes[0].get_xscale(), fig.axes[0].get_yscale()
        ('log', 'log')
    """
    steps = _to_numpy(steps, "steps").reshape(-1)
    per_step = [np.abs(_to_numpy(d, f"deltas[{i}]").reshape(-1)) for i, d in enumerate(deltas)]
    _check_same_length("steps", steps, "deltas", per_step)
    mean = np.array([d.mean() for d in per_step])
    fig, ax = _figure_and_axes(ax, figsize=(5, 3.5))
    (line,) = ax.plot(steps, mean, marker="o", label=label)
    if any(d.size > 1 for d in per_step):
        low, high = [d.min() for d in per_step], [d.max() for d in per_step]
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = np.unique(np.concatenate([np.asarray(other.get_xdata(), float) for other in ax.lines]))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])  # label the step counts actually used
    ax.tick_params(axis="x", which="minor", labelbottom=False)
    ax.set_xlabel("integration steps")
    ax.set_ylabel("|convergence delta|")
    if label is not None:
        ax.legend()
    return fig


def plot_deletion_curves(fractions, curves, *, aucs=None, kind="deletion", ax=None):
    """Deletion (or insertion) curves, one line per method, AUC in the legend.

    Deletion: remove the most important codes first; a faithful method makes the model
    output drop fast (lower AUC is better). Insertion: add them first (higher is better).

    Args:
        fractions: Fractions of codes removed/inserted, e.g. ``[0, 0.25, 0.5, 1]``.
        curves: ``{method name: model output at each fraction}``.
        aucs: Optional ``{method name: AUC}``; missing entries use the trapezoid rule.
        kind: ``"deletion"`` or ``"insertion"``.
        ax: Axes to draw into; a new Figure when ``None``.

    Returns:
        The Figure.

    Example:
        >>> fig = plot_deletion_curves([0, 0.5, 1], {"IG": [0.9, 0.3, 0.1]})
        >>> fig.axes[0].get_legend().get_texts()[0].get_text()
        'IG (AUC = 0.400)'
    """
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion'; got {kind!r}.")
    fractions = _to_numpy(fractions, "fractions").reshape(-1)
    fig, ax = _figure_and_axes(ax, figsize=(5, 3.5))
    for method, curve in curves.items():
        values = _to_numpy(curve, f"curve of {method!r}").reshape(-1)
        _check_same_length("fractions", fractions, f"curve of {method!r}", values)
        auc = (aucs or {}).get(method)
        auc = float(np.trapezoid(values, fractions)) if auc is None else float(auc)
        ax.plot(fractions, values, marker="o", label=f"{method} (AUC = {auc:.3f})")
    better = "lower" if kind == "deletion" else "higher"
    ax.set_xlabel(f"fraction of codes {'removed' if kind == 'deletion' else 'inserted'}")
    ax.set_ylabel("model output")
    ax.set_title(f"{kind.capitalize()} curve ({better} AUC = more faithful)")
    ax.legend()
    return fig
