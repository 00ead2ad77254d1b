"""Deterministic, self-contained HTML views of attributions.

The same input always gives the same string: element ids are chosen by the caller,
there are no timestamps, no random ids, no scripts and no external CSS or fonts, so
the output works offline and notebook outputs can be compared in tests. Display in a
notebook with ``IPython.display.HTML(text)``.

Example:
    >>> from ehrexplain.viz import token_heatmap_html
    >>> text = token_heatmap_html(["C01", "C02"], [0.8, -0.4], element_id="patient-0")
    >>> text.count("<span")
    2
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence

import numpy as np

from .plots import _check_same_length, _to_numpy

POSITIVE_RGB = (214, 39, 40)  # same red as plots.POSITIVE_COLOR
NEGATIVE_RGB = (31, 119, 180)  # same blue as plots.NEGATIVE_COLOR
_VALID_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_SPAN_STYLE = "display:inline-block;margin:1px;padding:1px 5px;border-radius:3px;font-family:monospace"


def _check_element_id(element_id) -> str:
    if not isinstance(element_id, str) or not _VALID_ID.fullmatch(element_id):
        raise ValueError(
            f"element_id must start with a letter and contain only letters, digits, '-' or '_'; got {element_id!r}."
        )
    return element_id


def _fmt(value: float, decimals: int) -> str:
    """Fixed-decimal text without a confusing '-0.000'."""
    text = f"{value:.{decimals}f}"
    return text[1:] if float(text) == 0 and text.startswith("-") else text


def _background(value: float, scale: float, signed: bool) -> tuple[str, float]:
    """CSS colour for one score: red for positive, blue for negative, alpha = |value| / scale."""
    alpha = abs(value) / scale if scale > 0 else 0.0
    r, g, b = NEGATIVE_RGB if signed and value < 0 else POSITIVE_RGB
    return f"rgba({r},{g},{b},{alpha:.3f})", alpha


def token_heatmap_html(tokens, scores, *, element_id, names=None, signed=None, title=None, decimals=3) -> str:
    """Codes as coloured chips; the background encodes each code's score.

    Args:
        tokens: Codes (or any tokens), one per score.
        scores: One score per token (list, numpy array or torch tensor).
        element_id: The ``id`` of the outer ``<div>``: a letter followed by letters,
            digits, ``-`` or ``_``. Choose a different one per output cell.
        names: Optional ``{code: readable name}`` shown in the hover tooltip.
        signed: Red for positive and blue for negative scores. ``None``: signed when
            any score is negative. ``False``: all red, shade by ``|score|``.
        title: Optional heading shown above the chips.
        decimals: Decimals of the scores in tooltips.

    Returns:
        An HTML string: ``<div id=element_id>`` with one ``<span>`` per token.

    Raises:
        ValueError: Invalid ``element_id``, lengths differ, or a score is not finite.

    Example:
        >>> text = token_heatmap_html(["C01"], [0.5], element_id="p0", names={"C01": "sepsis"})
        >>> 'title="C01 — sepsis: 0.500"' in text
        True
    """
    _check_element_id(element_id)
    tokens = list(tokens)
    values = _to_numpy(scores, "scores").reshape(-1)
    _check_same_length("tokens", tokens, "scores", values)
    if not np.all(np.isfinite(values)):
        raise ValueError("scores contain NaN or infinity; replace them (e.g. np.nan_to_num) before plotting.")
    is_signed = bool(np.any(values < 0)) if signed is None else bool(signed)
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    parts = [f'<div id="{element_id}" style="line-height:1.9;font-size:13px">']
    if title:
        parts.append(f'<div style="font-weight:bold;margin-bottom:2px">{html.escape(str(title))}</div>')
    for token, value in zip(tokens, values):
        label = str(token) if not names or token not in names else f"{token} — {names[token]}"
        color, alpha = _background(float(value), scale, is_signed)
        text_color = "#ffffff" if alpha > 0.6 else "#000000"
        parts.append(
            f'<span title="{html.escape(label)}: {_fmt(value, decimals)}" data-score="{_fmt(value, decimals)}" '
            f'style="{_SPAN_STYLE};background-color:{color};color:{text_color}">{html.escape(str(token))}</span>'
        )
    parts.append("</div>")
    return "\n".join(parts)


def _cell(value, decimals: int) -> str:
    if isinstance(value, (float, np.floating)):
        return _fmt(float(value), decimals)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalar
        return _cell(value.item(), decimals)
    return html.escape(str(value))


def attribution_table_html(rows: Sequence[Mapping], *, element_id, decimals=3) -> str:
    """A plain HTML table from a list of dicts (columns in first-seen key order).

    Args:
        rows: One dict per row, e.g. ``{"method": "IG", "deletion AUC": 0.21}``.
        element_id: The table's ``id`` (same rules as :func:`token_heatmap_html`).
        decimals: Decimals for float cells.

    Returns:
        An HTML ``<table>`` string; missing keys give empty cells.

    Example:
        >>> attribution_table_html([{"method": "IG", "auc": 0.25}], element_id="t1").count("<td")
        2
    """
    _check_element_id(element_id)
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"rows[{i}] must be a dict of column -> value; got {type(row).__name__}.")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cell_style = 'style="padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"'
    head = "".join(f"<th {cell_style}>{html.escape(str(c))}</th>" for c in columns)
    body = [
        "<tr>" + "".join(f"<td {cell_style}>{_cell(row[c], decimals) if c in row else ''}</td>" for c in columns)
        + "</tr>"
        for row in rows
    ]
    opening = f'<table id="{element_id}" style="border-collapse:collapse;font-size:13px">'
    return "\n".join([opening, f"<tr>{head}</tr>", *body, "</table>"])
