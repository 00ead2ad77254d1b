"""What a student does in JupyterLab, as Playwright steps (used by the browser tests)."""

from __future__ import annotations

import time

#: JavaScript: cells still to run, cells run, and error outputs, of the current notebook.
_PROGRESS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets.filter(c => c.model.type === 'code');
  const expected = c => (c.model.getMetadata('tags') || []).includes('raises-exception');
  const done = c => c.model.executionCount !== null && !c.promptNode.textContent.includes('*');
  return {
    pending: cells.filter(c => !done(c)).length,
    total: cells.length,
    errors: cells.filter(c => !expected(c)).flatMap(c => c.model.outputs.toJSON())
      .filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`),
  };
}"""


def open_notebook(page, lab, name: str) -> None:
    """Open ``name`` in JupyterLab and wait for its kernel."""
    workspace = name.removesuffix(".ipynb").replace(" ", "_")  # one per notebook, reset: no tabs of other tests
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{name}?reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.context", timeout=60_000)
    page.wait_for_function(
        "() => { const s = window.jupyterapp.shell.currentWidget.sessionContext;"
        " return s && s.session && s.session.kernel && s.kernelDisplayStatus === 'idle'; }",
        timeout=60_000,
    )


def command(page, name: str, args: dict | None = None) -> None:
    """Run a JupyterLab command (as the menus do)."""
    page.evaluate("([name, args]) => window.jupyterapp.commands.execute(name, args)", [name, args or {}])


def start_run_all(page) -> None:
    """Clear outputs and Run All (returns at once)."""
    command(page, "notebook:clear-all-cell-outputs")
    command(page, "notebook:run-all-cells")


def finished(page) -> bool:
    """Whether every code cell has run; fails on a traceback from a cell not tagged raises-exception."""
    progress = page.evaluate(_PROGRESS)
    assert not progress["errors"], f"a cell failed: {progress['errors']}"
    return bool(progress["total"]) and progress["pending"] == 0


def run_all(page, timeout: float = 240) -> None:
    """Run All and wait until every code cell has run."""
    start_run_all(page)
    deadline = time.monotonic() + timeout
    while not finished(page):
        assert time.monotonic() < deadline, "cells still running after {timeout} s"
        page.wait_for_timeout(500)


#: JavaScript: widget views in the outputs (by the notebook model), how many drew a widget, how many
#: are wider than their output area (must scroll inside, not as a whole), how many images are blank.
WIDGET_VIEWS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets.filter(c => c.model.type === 'code');
  const mime = 'application/vnd.jupyter.widget-view+json';
  const expected = cells.flatMap(c => c.model.outputs.toJSON()).filter(o => o.data && o.data[mime]).length;
  const outputs = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')];
  const drawn = outputs.filter(o => o.querySelector(':scope > .jupyter-widgets')).length;
  const images = [...document.querySelectorAll('.jp-OutputArea-output img.widget-image')];
  const wide = outputs.map(o => o.querySelector(':scope > .jupyter-widgets'))
    .filter(w => w && w.scrollWidth > w.parentElement.clientWidth + 1).length;
  return {expected, drawn, wide, blank_images: images.filter(i => !(i.complete && i.naturalWidth > 0)).length};
}"""


def notebook_text(page) -> str:
    return page.inner_text(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
