"""Every committed notebook, opened in JupyterLab as a student first meets it (nothing run), shows the figures it
stores: each PNG output of the file is drawn with real pixels (tests/test_notebook_figures.py checks that every cell
that draws a figure stores one)."""

from __future__ import annotations

import json
import time

import pytest
from browser_support import REPO, screenshot
from lab_actions import activate, figures, open_notebook, open_tab, shut_down_kernel

pytestmark = pytest.mark.browser

WIDGET = "application/vnd.jupyter.widget-view+json"
NOTEBOOKS = sorted(path.name for path in (REPO / "notebooks").glob("*.ipynb"))


def stored_figures(name: str) -> int:
    """Figures (PNG outputs that are not a widget view's fallback) in the committed file, counted without a browser."""
    cells = json.loads((REPO / "notebooks" / name).read_text(encoding="utf-8"))["cells"]
    data = [output.get("data", {}) for cell in cells for output in cell.get("outputs", [])]
    return sum("image/png" in d and WIDGET not in d for d in data)  # a widget view's PNG is its static fallback


def test_every_stored_figure_is_drawn(page, lab):
    counts = {}
    for number, name in enumerate(NOTEBOOKS):
        if number == 0:
            open_notebook(page, lab, name)
        else:
            open_tab(page, name)
        activate(page, name)
        images = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea .jp-RenderedImage img")
        for k in range(images.count()):  # JupyterLab loads an image lazily, when it scrolls into view, as a reader does
            images.nth(k).scroll_into_view_if_needed()
        deadline = time.monotonic() + 30
        while (seen := figures(page, name))["drawn"] < seen["stored"] and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        counts[name] = (stored_figures(name), seen["stored"], seen["drawn"])
        if seen["drawn"] < seen["stored"]:
            screenshot(page, f"stored_figures_{name.removesuffix('.ipynb')}")
        shut_down_kernel(page, name)
    wrong = {name: c for name, c in counts.items() if not c[0] == c[1] == c[2]}
    assert not wrong, f"(in the file, in JupyterLab's model, drawn) per notebook: {wrong}; all: {counts}"
    assert sum(c[2] for c in counts.values()) >= len(NOTEBOOKS), counts  # the series draws, not only a few
