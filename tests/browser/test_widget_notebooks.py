"""Smoke run of every notebook that uses a widget: Run All in JupyterLab, every widget view draws."""

from __future__ import annotations

import pytest
from browser_support import REPO
from widget_notebooks import QUICKSTART, widget_notebooks

pytestmark = pytest.mark.browser


def test_widget_notebooks_are_found():
    found = widget_notebooks()
    assert QUICKSTART in found and "07_comparing_and_evaluating.ipynb" in found
    texts = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "notebooks").glob("*.ipynb")}
    assert all("widget-view+json" in texts[name] for name in found)  # each displays one (when run)


def test_every_widget_notebook_runs_and_draws_its_widgets(widget_notebooks_run):
    """All of them ran as tabs of one page (see ``widget_notebooks.run_in_tabs``); every failure is listed."""
    page, failures = widget_notebooks_run
    assert not failures, failures
    assert not page.errors, page.errors
