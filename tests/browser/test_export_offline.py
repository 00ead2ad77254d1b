"""Exported views opened from file:// with every other request aborted: they must draw, not stay blank."""

from __future__ import annotations

import pandas as pd
import pytest
from browser_support import offline, screenshot, widget_errors

from ehrexplain.testing import ForwardOnlyModel
from ehrexplain.viz.export import save_html
from ehrexplain.viz.widgets import AttentionLayersExplorer, ComparisonDashboard, ExplanationExplorer

pytestmark = pytest.mark.browser

VIEWS = {
    "explorer": lambda model, cohort: ExplanationExplorer(model, cohort, index=3),
    "dashboard": lambda model, cohort: ComparisonDashboard(
        model, cohort, index=3,
        metrics=pd.DataFrame({"comprehensiveness": [0.1, 0.2]}, index=pd.Index(["rollout", "deeplift"], name="method")),
    ),
    "layers": lambda model, cohort: AttentionLayersExplorer(model, cohort, index=3),
    "forward_only": lambda model, cohort: ExplanationExplorer(ForwardOnlyModel(model), cohort, index=3),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(VIEWS))
def test_exported_view_renders_offline(kind, page, tmp_path, demo_transformer, demo_cohort):
    from playwright.sync_api import expect

    view = VIEWS[kind](demo_transformer, demo_cohort)
    path = save_html(view, tmp_path / f"{kind}.html", title=kind)
    page.set_viewport_size({"width": 600, "height": 900})  # narrower than the figure and the table
    blocked = offline(page)
    page.goto(path.as_uri())  # waits for "load": the inlined renderer has run (or failed) by then
    assert not page.errors, page.errors  # e.g. "Automatic publicPath is not supported in this browser"
    figure = page.locator("img.widget-image")
    expect(figure).to_be_visible(timeout=30_000)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 100", arg=figure.element_handle())
    body = page.inner_text("body")
    assert not page.errors, page.errors
    assert not widget_errors(body)
    if kind in ("explorer", "forward_only"):
        assert "p(label = 1)" in body and "patient 3:" in body
    if kind == "forward_only":  # impossible methods are not offered; the reason is on the page
        assert page.locator("select option").all_inner_texts()[0] == "Attention\u00a0Rollout"
        assert "Chefer\u00a0relevance" not in page.locator("select").first.inner_text()
        assert "unavailable: Chefer relevance: needs attention gradients" in body
    label = page.locator(".widget-label").first
    font = label.evaluate("(el) => getComputedStyle(el).fontFamily")
    assert "serif" not in font.replace("sans-serif", ""), font
    root_width = page.evaluate("() => document.querySelector('.jupyter-widgets.widget-vbox').scrollWidth")
    assert root_width <= 600, f"the view is {root_width}px wide in a 600px window: it scrolls as a whole"
    assert not [url for url in blocked if not url.startswith("data:")], blocked
    screenshot(page, f"export_offline_{kind}")
