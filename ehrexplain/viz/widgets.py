"""ipywidgets explorers: wiring only; the logic lives in explanation, plots, html, evaluate.

Figures are shown as PNG ``Image`` widgets, so an explorer renders the same in
JupyterLab, in a notebook saved to GitHub and in an exported HTML file, and
nothing leaks to stdout under nbval. Errors (a patient out of range, a failing
explanation) appear as a message in the widget; methods the model cannot support
are not offered but listed with the reason. Display data also carries the current
view as HTML/PNG (:mod:`.static_view`) for places without a kernel.

Example:
    >>> from ehrexplain.viz.widgets import ExplanationExplorer
    >>> explorer = ExplanationExplorer(model, cohort)   # as the last line of a cell, displays it
    >>> explorer.method.value, explorer.message.value
    ('rollout', 'patient 0: p(label = 1) = 0.00')
"""

from __future__ import annotations

import html
import io
import math
import textwrap

import ipywidgets as widgets

from ..data.sources import as_source
from ..evaluation.explanation import BASELINES, check_patient_index, explain_patient
from ..methods import method_spec
from .html import attribution_table_html, token_heatmap_html
from .method_choices import METHOD_LABELS, label_name, method_support, n_classes, unsupported_html
from .plots import plot_code_attributions, plot_method_comparison, plot_rollout_matrix
from .static_view import StaticFallback


def figure_png(figure) -> bytes:
    """The PNG bytes of a matplotlib Figure."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return buffer.getvalue()


def error_html(error: Exception) -> str:
    """A readable, escaped one-line message for an exception (no traceback)."""
    return f'<div style="color:#b00020"><b>{type(error).__name__}:</b> {html.escape(str(error))}</div>'


#: Codes drawn at once: a real record has hundreds, so the explorer pages and searches them.
PAGE_SIZE = 25
#: Characters per line of a code's label before it wraps (long names are wrapped, never clipped).
LABEL_WIDTH = 48

#: What an explanation can raise on a bad choice; shown in the widget, never swallowed.
SHOWN_ERRORS = (IndexError, KeyError, TypeError, ValueError, RuntimeError)


def _short(label: str, width: int = LABEL_WIDTH // 2) -> str:
    """``label`` cut to ``width`` characters, with an ellipsis where it was cut."""
    return label if len(label) <= width else label[: width - 1] + "…"


class _CachedExplainer:
    """Explanations keyed by their arguments, so moving back to a view is instant."""

    def __init__(self, model, cohort):
        self.model, self.cohort, self.cache = model, as_source(cohort), {}
        self.names = dict(getattr(cohort, "code_names", None) or {})  # a synthetic Cohort's own names

    def label(self, explanation, i: int) -> str:
        """Label of code ``i`` with its readable name (``"drugs: C10AA05 — atorvastatin"``) when one is known."""
        label, name = explanation.labels[i], self.names.get(explanation.codes[i])
        return label if not name or label.endswith(name) else f"{label} — {name}"

    def __call__(self, index, method, **options):
        key = (index, method, tuple(sorted(options.items())))
        if key not in self.cache:
            self.cache[key] = explain_patient(self.model, self.cohort, index, method, **options)
        return self.cache[key]


class ExplanationExplorer(StaticFallback, widgets.VBox):
    """Pick a patient, a method, a target class and the method's options; see the explanation.

    ``cohort`` is anything :func:`~ehrexplain.data.as_source` takes (a PyHealth ``SampleDataset``, a
    non-shuffling dataloader, a synthetic ``Cohort``, a ``PatientSource`` with code names). The figure
    shows ``PAGE_SIZE`` codes at a time, largest ``|score|`` first; ``search`` keeps the codes whose
    label contains it and ``page`` steps through the rest.

    Attributes set by each refresh (handy in tests): ``explanation``, ``figure``, ``shown`` (indices into
    ``explanation.labels`` of the codes drawn), ``message.value``, ``page_info.value``, ``heatmap.value``.

    Example:
        >>> explorer = ExplanationExplorer(model, cohort, index=3)
        >>> explorer.method.value = "deeplift"      # what picking DeepLIFT in the dropdown does
        >>> explorer.explanation.method, explorer.page_info.value
        ('deeplift', 'codes 1–15 of 15, largest |score| first')
    """

    def __init__(self, model, cohort, methods=tuple(METHOD_LABELS), index: int = 0):
        self.explain, self.model = _CachedExplainer(model, cohort), model
        check_patient_index(self.explain.cohort, index)  # IntText would silently turn 2.7 into 2 and True into 1
        supported, reasons = method_support(model, methods)
        self.patient = widgets.IntText(value=index, description="patient")
        self.method = widgets.Dropdown(options=[(METHOD_LABELS.get(m, m), m) for m in supported], description="method")
        self.unsupported = widgets.HTML(unsupported_html(reasons))
        classes = n_classes(model)
        self.target = widgets.Dropdown(
            options=[("predicted", None)] + [(label_name(model, c), c) for c in range(classes if classes > 1 else 0)],
            description="target",
        )
        self.steps = widgets.IntSlider(value=32, min=4, max=256, step=4, description="IG steps")
        self.baseline = widgets.Dropdown(options=BASELINES, description="baseline")
        self.head_fusion = widgets.Dropdown(options=["mean", "max", "min"], description="heads")
        self.discard_ratio = widgets.FloatSlider(value=0.0, min=0.0, max=0.9, step=0.1, description="discard")
        self.message, self.heatmap = widgets.HTML(), widgets.HTML()
        self.search = widgets.Text(placeholder="part of a code or name", description="search")
        self.page = widgets.BoundedIntText(value=1, min=1, max=1, description="page")
        self.page_info = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="min(800px, 100%)"))
        self.explanation = self.figure = None
        self.shown: list[int] = []
        controls = [self.patient, self.method, self.target, self.steps, self.baseline, self.head_fusion, self.discard_ratio]
        for control in controls:
            control.observe(lambda _: self.refresh(), names="value")
        self.search.observe(lambda _: self._first_page(), names="value")
        self.page.observe(lambda _: self._draw(), names="value")
        rows = [widgets.HBox(controls[:3]), widgets.HBox(controls[3:]), self.unsupported]
        paging = widgets.HBox([self.search, self.page, self.page_info])
        super().__init__([*rows, self.message, paging, self.image, self.heatmap])
        self.refresh()

    def _option_controls(self) -> dict:
        """Per option name of a method's schema, the control that sets it."""
        return {"steps": self.steps, "head_fusion": self.head_fusion, "discard_ratio": self.discard_ratio}

    def options(self) -> dict:
        """Keyword options for the chosen method, as its registration declares them."""
        spec = method_spec(self.method.value)
        options = {name: control.value for name, control in self._option_controls().items() if name in spec.options}
        if spec.class_specific:
            options["target_class_idx"] = self.target.value
        if spec.uses_baseline:
            options["baseline"] = self.baseline.value
        if "alpha_rule" in spec.options:
            options["alpha_rule"] = "gauss_legendre"  # the accurate rule, whose small delta notebook 04 teaches
        return options

    def _show_relevant_controls(self) -> None:
        spec = method_spec(self.method.value)
        visible = {control: name in spec.options for name, control in self._option_controls().items()}
        visible[self.baseline] = spec.uses_baseline
        visible[self.target] = spec.class_specific and len(self.target.options) > 1
        for control, show in visible.items():
            control.layout.display = None if show else "none"

    def _delta_warning(self, explanation) -> str:
        """A hint when the scores miss more than 10% of ``f(x) - f(b)``; empty otherwise."""
        if explanation.relative_delta is None or explanation.relative_delta <= 0.1:
            return ""
        hints = []
        if "steps" in method_spec(explanation.method).options:
            hints.append("more steps shrink it")
        if explanation.method == "deeplift":
            hints.append("DeepLIFT is exact only through linear layers and elementwise activations")
        if self.baseline.value == "padding":
            hints.append("an all-padding baseline is an input the model masks out entirely, far from anything it "
                         "was trained on; the UNK baseline is usually closer")  # fmt: skip
        text = f"The scores miss {explanation.relative_delta:.0%} of f(x) − f(baseline): " + "; ".join(hints) + "."
        return f'<div style="color:#8a5a00">{html.escape(text)}</div>'

    def refresh(self) -> None:
        """Recompute (or fetch from cache) and redraw."""
        self._show_relevant_controls()
        try:
            explanation = self.explain(self.patient.value, self.method.value, **self.options())
        except SHOWN_ERRORS as error:
            self.message.value = error_html(error)
            self.image.value, self.heatmap.value = b"", ""  # no stale view under the message
            self.image.layout.display = "none"  # and no broken-image icon
            return
        self.explanation = explanation
        self.image.layout.display = None
        title = f"patient {explanation.index}: p({label_name(self.model, explanation.target)}) = {explanation.probability:.2f}"
        if explanation.delta is not None:
            title += f", completeness delta = {explanation.delta:+.3g}"
        self.message.value = html.escape(title) + self._delta_warning(explanation)
        self._draw()
        self.heatmap.value = token_heatmap_html(
            explanation.labels, explanation.scores, signed=explanation.signed,
            element_id=f"ehrexplain-{explanation.method}-{explanation.index}",
        )  # fmt: skip


    def _first_page(self) -> None:
        if self.page.value == 1:
            self._draw()
        self.page.value = 1  # redraws through its observer when it changes

    def _page_of_codes(self) -> tuple[list[int], int]:
        """Indices of the current page's codes (search matches, largest ``|score|`` first) and the match count."""
        scores, query = self.explanation.scores, self.search.value.strip().lower()
        labels = [self.explain.label(self.explanation, i) for i in range(len(scores))]
        matching = sorted((i for i, label in enumerate(labels) if query in label.lower()), key=lambda i: -abs(scores[i]))
        self.page.max = max(1, math.ceil(len(matching) / PAGE_SIZE))
        start = (self.page.value - 1) * PAGE_SIZE
        return matching[start : start + PAGE_SIZE], len(matching)

    def _draw(self) -> None:
        """Draw the current page of codes of ``self.explanation`` (wrapped labels, height to fit)."""
        from matplotlib.figure import Figure

        explanation = self.explanation
        if explanation is None:
            return
        self.shown, n_matching = self._page_of_codes()
        query, first = self.search.value.strip(), (self.page.value - 1) * PAGE_SIZE
        of = f" of {n_matching} matching {query!r}" if query else f" of {len(explanation.labels)}"
        self.page_info.value = html.escape(
            f"codes {first + 1}–{first + len(self.shown)}{of}, largest |score| first" if self.shown
            else f"no code matches {query!r}")  # fmt: skip
        labels = [textwrap.fill(self.explain.label(explanation, i), LABEL_WIDTH) for i in self.shown]
        lines = sum(label.count("\n") + 1 for label in labels)
        self.figure = Figure(figsize=(8, 0.9 + 0.16 * lines + 0.12 * len(labels)), layout="constrained")
        truth = None if explanation.ground_truth is None else explanation.ground_truth[self.shown]
        plot_code_attributions(
            labels, explanation.scores[self.shown], ground_truth=truth, signed=explanation.signed,
            title=f"Patient {explanation.index}: {METHOD_LABELS.get(explanation.method, explanation.method)}",
            ax=self.figure.add_subplot(),
        )  # fmt: skip
        self.image.value = figure_png(self.figure)


class ComparisonDashboard(StaticFallback, widgets.VBox):
    """All methods side by side for one patient, plus a cohort metrics table.

    Args:
        metrics: a DataFrame from :func:`ehrexplain.evaluate.compare` (one row
            per method), shown under the plot; computed elsewhere because it is slow.

    Example:
        >>> from ehrexplain.evaluation import compare
        >>> methods = ["rollout", "chefer"]
        >>> metrics = compare(model, cohort, methods, max_batches=1, progress=False)
        >>> dashboard = ComparisonDashboard(model, cohort, methods, metrics=metrics)
        >>> sorted(dashboard.explanations), "comprehensiveness" in dashboard.table.value
        (['chefer', 'rollout'], True)
    """

    def __init__(self, model, cohort, methods=tuple(METHOD_LABELS), metrics=None, index: int = 0):
        self.methods, reasons = method_support(model, methods)
        self.explain = _CachedExplainer(model, cohort)
        self.patient = widgets.IntText(value=index, description="patient")
        self.message, self.unsupported = widgets.HTML(), widgets.HTML(unsupported_html(reasons))
        self.table = widgets.HTML(layout=widgets.Layout(overflow="auto"))  # stretched to the box; scrolls inside itself
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.figure, self.explanations = None, {}
        if metrics is not None:
            rows = metrics.reset_index().to_dict("records")
            self.table.value = attribution_table_html(rows, element_id="ehrexplain-metrics")
        self.patient.observe(lambda _: self.refresh(), names="value")
        super().__init__([self.patient, self.unsupported, self.message, self.image, self.table])
        self.refresh()

    def refresh(self) -> None:
        explanations, problems = {}, []
        for method in self.methods:
            try:
                explanations[method] = self.explain(self.patient.value, method)
            except SHOWN_ERRORS as error:
                problems.append(f"{METHOD_LABELS.get(method, method)}: {error}")
                if isinstance(error, IndexError):
                    break
        self.message.value = error_html(ValueError("; ".join(problems))) if problems else ""
        self.image.layout.display = None if explanations else "none"
        if not explanations:
            return
        self.explanations = explanations
        first = next(iter(explanations.values()))
        by_method = {METHOD_LABELS.get(m, m): e.scores for m, e in explanations.items()}
        labels = [textwrap.fill(self.explain.label(first, i), LABEL_WIDTH) for i in range(len(first.labels))]
        self.figure = plot_method_comparison(labels, by_method, ground_truth=first.ground_truth, top_k=PAGE_SIZE)
        self.figure.suptitle(f"Patient {first.index}: p({label_name(self.explain.model, first.target)}) = "
                             f"{first.probability:.2f}")  # fmt: skip
        self.image.value = figure_png(self.figure)


class AttentionLayersExplorer(StaticFallback, widgets.VBox):
    """Step through layers and heads and watch the rollout product build up.

    Left: the chosen layer's attention (one head, or heads fused by mean).
    Right: the rollout of layers ``1..layer`` (each ``0.5 (A + I)``, multiplied).

    Example:
        >>> layers = AttentionLayersExplorer(model, cohort, feature_key="conditions")
        >>> layers.layer.max, layers.message.value     # two layers; each rollout row sums to 1
        (2, 'row sums of the rollout: 1.000 .. 1.000')
    """

    def __init__(self, model, cohort, feature_key: str | None = None, index: int = 0):
        from ..methods import AttentionRollout

        self.rollout, self.cohort = AttentionRollout(model), as_source(cohort)
        self.names = dict(getattr(cohort, "code_names", None) or {})  # a synthetic Cohort's own names
        self.feature_key = feature_key or model.feature_keys[0]
        self.patient = widgets.IntText(value=index, description="patient")
        self.layer = widgets.IntSlider(value=1, min=1, max=1, description="layer")
        self.head = widgets.Dropdown(options=[("mean of heads", None)], description="head")
        self.message = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.figure, self.maps, self._cache = None, None, {}
        for control in (self.patient, self.layer, self.head):
            control.observe(lambda _: self.refresh(), names="value")
        super().__init__([widgets.HBox([self.patient, self.layer, self.head]), self.message, self.image])
        self.refresh()

    def _maps(self, index: int):
        """Attention maps and token labels of one patient, computed once."""
        if index not in self._cache:
            from ..core.batch import feature_value

            check_patient_index(self.cohort, index)
            batch = self.cohort.batch([index])
            maps = [m[0] for m in self.rollout.attention_maps(**batch)[self.feature_key]]
            ids = feature_value(self.rollout.model, self.feature_key, batch[self.feature_key])[0]
            tokens = self.cohort.decode(self.feature_key, [int(i) for i in ids.reshape(-1) if int(i) != 0])
            self._cache[index] = (maps, tokens)
        return self._cache[index]

    def refresh(self) -> None:
        from matplotlib.figure import Figure

        from ..methods.attention_rollout import rollout_matrix

        try:
            maps, tokens = self._maps(self.patient.value)
        except SHOWN_ERRORS as error:
            self.message.value = error_html(error)
            self.image.layout.display = "none"
            return
        self.maps, self.image.layout.display = maps, None
        self.layer.max = len(maps)
        heads = maps[0].shape[0]
        if len(self.head.options) != heads + 1:
            self.head.options = [("mean of heads", None)] + [(f"head {h + 1}", h) for h in range(heads)]
        n = len(tokens)
        chosen = maps[self.layer.value - 1]
        layer_map = chosen.mean(0) if self.head.value is None else chosen[self.head.value]
        product = rollout_matrix([m[None] for m in maps[: self.layer.value]])[0]
        labels = [_short(f"{code} {self.names[code]}" if code in self.names else code) for code in tokens]
        self.figure = Figure(figsize=(10, 5), layout="constrained")
        left, right = self.figure.subplots(1, 2, sharey=True)
        heads = "mean of heads" if self.head.value is None else f"head {self.head.value + 1}"
        plot_rollout_matrix(layer_map[:n, :n], tokens=labels, title=f"layer {self.layer.value} attention ({heads})",
                            ax=left)
        plot_rollout_matrix(product[:n, :n], tokens=labels, title=f"rollout of layers 1..{self.layer.value}", ax=right)
        right.tick_params(labelleft=False)  # the same codes as on the left
        right.set_ylabel("")
        self.figure.suptitle(f"Patient {self.patient.value}, {self.feature_key}")
        self.message.value = f"row sums of the rollout: {product[:n].sum(-1).min():.3f} .. {product[:n].sum(-1).max():.3f}"
        self.image.value = figure_png(self.figure)
