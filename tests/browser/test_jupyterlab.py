"""JupyterLab in Chromium: the quickstart runs, its explorer renders and answers its controls."""

from __future__ import annotations

from browser_support import screenshot, widget_errors
from lab_actions import notebook_text, open_notebook, run_all


def explorer_output(page):
    """The output area holding the (last) ExplanationExplorer: a widget with a figure and a method dropdown."""
    return page.locator(".jp-OutputArea-output:has(.widget-image):has(.widget-dropdown:has-text('method'))").last


def test_quickstart_explorer_answers_its_controls(page, lab):
    open_notebook(page, lab, "00_quickstart.ipynb")
    run_all(page)
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
    explorer.locator(".widget-dropdown select").first.select_option(label="Integrated\u00a0Gradients")  # ipywidgets shows nbsp
    page.wait_for_function(
        "([el, old]) => el.getAttribute('src') !== old", arg=[image.element_handle(), after_patient], timeout=60_000
    )
    page.wait_for_function("(el) => el.innerText.includes('completeness delta')", arg=message.element_handle())
    assert explorer.locator(".widget-slider:has-text('IG steps')").is_visible()
    screenshot(explorer, "quickstart_explorer_after_controls")
    assert not page.errors
