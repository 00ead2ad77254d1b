"""Static views: matplotlib figures (:mod:`.plots`) and deterministic HTML (:mod:`.html`).

Every plot function takes ``ax=None`` and returns a Figure; nothing is shown until the
notebook displays the returned value. HTML functions return strings with ids chosen by
the caller, no scripts and no external resources.

Example:
    >>> from ehrexplain.viz import plot_code_attributions, token_heatmap_html
    >>> fig = plot_code_attributions(["C01", "C02"], [0.7, -0.2])
    >>> token_heatmap_html(["C01"], [0.7], element_id="demo").startswith('<div id="demo"')
    True
"""

from .html import attribution_table_html, token_heatmap_html
from .plots import (
    plot_attention_maps,
    plot_code_attributions,
    plot_convergence,
    plot_deletion_curves,
    plot_method_comparison,
    plot_patient_timeline,
    plot_rollout_matrix,
)

__all__ = [
    "plot_code_attributions",
    "plot_patient_timeline",
    "plot_method_comparison",
    "plot_attention_maps",
    "plot_rollout_matrix",
    "plot_convergence",
    "plot_deletion_curves",
    "token_heatmap_html",
    "attribution_table_html",
]
