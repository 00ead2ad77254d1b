"""Run every notebook that uses a widget in JupyterLab tabs, and check that each draws its widgets.

The browser tests share one such run (the ``widget_notebooks_run`` fixture): the quickstart's
controls are then worked in its tab, and every other notebook only has to have passed the check.
"""

from __future__ import annotations

import json
import re
import time

from browser_support import REPO, screenshot, widget_errors
from lab_actions import (activate, finished, notebook_text, open_notebook, open_tab, shut_down_kernel,
                         start_run_all, widget_views)

QUICKSTART = "00_quickstart.ipynb"
#: Kernels running at once (each mostly waits on its own single torch thread).
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


def check_rendered(page, name: str) -> None:
    """Every widget view of ``name`` drew, none blank or too wide, no widget error, no repr; screenshots saved."""
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


def run_in_tabs(page, lab, names: list[str], keep_kernels=(), timeout: float = 900) -> dict[str, str]:
    """Run All in each of ``names``, as tabs of ``page``, PARALLEL kernels at a time; check each when done.

    The later notebooks of the series are the longest, so they start first. A kernel is shut
    down once its notebook is checked, except for ``keep_kernels``. Returns the failures by
    notebook (every one, not only the first).
    """
    from playwright.sync_api import Error as PlaywrightError

    queue = sorted(names, reverse=True)
    open_notebook(page, lab, queue[0])
    running, failures = [], {}
    deadline = time.monotonic() + timeout
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
                check_rendered(page, name)
            except (AssertionError, PlaywrightError) as error:
                failures[name] = str(error)[:2000]
            if name not in keep_kernels:
                shut_down_kernel(page, name)
            running.remove(name)
        assert time.monotonic() < deadline, f"still running after {timeout} s: {running}"
        page.wait_for_timeout(500)
    return failures
