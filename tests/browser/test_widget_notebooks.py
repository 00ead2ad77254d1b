"""Smoke run of every notebook that uses a widget: Run All in JupyterLab, every widget view draws."""

from __future__ import annotations

import json
import re
import time

import pytest
from browser_support import REPO, new_page, screenshot, widget_errors
from lab_actions import (activate, finished, notebook_text, open_notebook, open_tab, shut_down_kernel,
                         start_run_all, widget_views)

pytestmark = pytest.mark.browser

#: Run at once (each kernel mostly waits on its own single torch thread).
PARALLEL = 3
_USES_WIDGETS = re.compile(r"\bipywidgets\b|ehrexplain\.viz\.widgets|\binteract\(")


def widget_notebooks() -> list[str]:
    """Notebooks whose code cells use a widget (found by scanning, so new notebooks are included)."""
    found = []
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        if any(_USES_WIDGETS.search("".join(c["source"])) for c in cells if c["cell_type"] == "code"):
            found.append(path.name)
    return found


def test_widget_notebooks_are_found():
    found = widget_notebooks()
    assert "00_quickstart.ipynb" in found and "07_comparing_and_evaluating.ipynb" in found
    texts = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "notebooks").glob("*.ipynb")}
    assert all("widget-view+json" in texts[name] for name in found)  # each displays one (when run)


def _check_rendered(page, name: str) -> None:
    activate(page, name)
    deadline = time.monotonic() + 60
    while (views := widget_views(page, name))["drawn"] < views["expected"] and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    screenshot(page, f"notebook_{name.removesuffix('.ipynb')}_page")
    assert views["expected"] > 0, "no widget view in the outputs"
    assert views["drawn"] == views["expected"] and views["blank_images"] == views["wide"] == 0, views
    text = notebook_text(page)
    assert not widget_errors(text), widget_errors(text)
    assert "children=(" not in text, "a widget shown as its repr"
    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output:has(> .jupyter-widgets)")
    for i, output in enumerate(o for o in outputs.all() if o.is_visible()):  # not an empty Output in a widget
        screenshot(output, f"notebook_{name.removesuffix('.ipynb')}_widget_{i}")


def test_every_widget_notebook_runs_and_draws_its_widgets(browser, lab):
    """Run All in every widget notebook, as tabs of one JupyterLab page, PARALLEL kernels at a time.

    The quickstart is run by test_jupyterlab. The later notebooks of the series are the
    longest, so they start first. Every failure is reported, not only the first.
    """
    from playwright.sync_api import Error as PlaywrightError

    queue = sorted((name for name in widget_notebooks() if name != "00_quickstart.ipynb"), reverse=True)
    page = new_page(browser)
    open_notebook(page, lab, queue[0])
    running, failures = [], {}
    deadline = time.monotonic() + 900
    try:
        while queue or running:
            while queue and len(running) < PARALLEL:
                name = queue.pop(0)
                open_tab(page, name)  # the first is open already: this only brings it to the front
                start_run_all(page, name)
                running.append(name)
            for name in list(running):
                try:
                    if not finished(page, name):
                        continue
                    _check_rendered(page, name)
                except (AssertionError, PlaywrightError) as error:
                    failures[name] = str(error)[:2000]
                shut_down_kernel(page, name)
                running.remove(name)
            assert time.monotonic() < deadline, f"still running: {running}"
            page.wait_for_timeout(500)
        assert not page.errors, page.errors
    finally:
        page.context.close()
    assert not failures, failures
