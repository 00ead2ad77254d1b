"""JupyterLab in Chromium: the quickstart runs, its explorer answers its controls, and an
unrun, untrusted copy of the result (and its nbconvert HTML) still shows the view."""

from __future__ import annotations

import json

import pytest
from browser_support import new_page, offline, screenshot, widget_errors
from lab_actions import activate, command, notebook_text, open_notebook
from widget_notebooks import QUICKSTART

pytestmark = pytest.mark.browser


def explorer_output(page):
    """The output area holding the (last) ExplanationExplorer: a widget with a figure and a method dropdown."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output"
                        ":has(.widget-image):has(.widget-dropdown:has-text('method'))").last


@pytest.fixture(scope="module")
def quickstart(widget_notebooks_run):
    """The quickstart's tab, after Run All (in the shared run of every widget notebook), brought to the front."""
    page, failures = widget_notebooks_run
    assert QUICKSTART not in failures, failures[QUICKSTART]
    activate(page, QUICKSTART)
    yield page
    screenshot(page, "quickstart_after_run_all")


def test_quickstart_explorer_answers_its_controls(quickstart):
    page = quickstart
    explorer = explorer_output(page)
    explorer.locator("img.widget-image").wait_for(timeout=30_000)
    text = notebook_text(page)
    assert not widget_errors(text), text[-2000:]
    message = explorer.locator(".widget-html-content").filter(has_text="p(label = 1)").first
    image = explorer.locator("img.widget-image")
    before_message, before_image = message.inner_text(), image.get_attribute("src")

    patient = explorer.locator(".widget-text input").first
    new_patient = int(patient.input_value()) + 1
    patient.fill(str(new_patient))
    patient.press("Enter")
    page.wait_for_function(
        "([el, old]) => el.getAttribute('src') !== old", arg=[image.element_handle(), before_image], timeout=30_000
    )
    assert message.inner_text().startswith(f"patient {new_patient}:") and message.inner_text() != before_message

    after_patient = image.get_attribute("src")
    explorer.locator(".widget-dropdown select").first.select_option(label="Integrated\u00a0Gradients")  # nbsp
    page.wait_for_function(
        "([el, old]) => el.getAttribute('src') !== old", arg=[image.element_handle(), after_patient], timeout=60_000
    )
    page.wait_for_function("(el) => el.innerText.includes('completeness delta')", arg=message.element_handle())
    assert explorer.locator(".widget-slider:has-text('IG steps')").is_visible()
    assert not page.errors
    screenshot(explorer, "quickstart_explorer_after_controls")


def _untrusted_copy(quickstart, lab) -> str:
    """Save the run quickstart, then copy it with one metadata change: its signature no longer matches."""
    command(quickstart, "docmanager:save")
    quickstart.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
    notebook = json.loads((lab.root / QUICKSTART).read_text(encoding="utf-8"))
    notebook["metadata"]["ehrexplain_static_check"] = True
    (lab.root / "static_copy.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    return "static_copy.ipynb"


def _assert_static_view(page, where: str) -> None:
    view = page.locator(".ehrexplain-static-view").first
    view.wait_for(timeout=30_000)
    figure = view.locator("img")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 100", arg=figure.element_handle())
    text = page.inner_text("body")
    assert "p(label = 1)" in view.inner_text() and "method: Attention Rollout" in view.inner_text()
    assert "ExplanationExplorer(children" not in text and not widget_errors(text)
    screenshot(view, f"static_view_{where}")


def test_unrun_untrusted_notebook_shows_the_static_view(quickstart, lab, browser):
    name = _untrusted_copy(quickstart, lab)
    page = new_page(browser)
    try:
        open_notebook(page, lab, name)  # a kernel starts, nothing runs
        _assert_static_view(page, "jupyterlab_untrusted")
    finally:
        page.context.close()


def test_nbconvert_html_shows_the_static_view_offline(quickstart, lab, browser):
    import nbformat
    from nbconvert import HTMLExporter

    name = _untrusted_copy(quickstart, lab)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(lab.root / name, as_version=4))
    path = lab.root / "static_copy.html"
    path.write_text(body, encoding="utf-8")
    page = new_page(browser)
    try:
        offline(page)
        page.goto(path.as_uri())
        _assert_static_view(page, "nbconvert_offline")
    finally:
        page.context.close()
