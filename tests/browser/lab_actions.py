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
    page.goto(f"{lab.url}/lab/tree/{name}")
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


def run_all(page, timeout: float = 240) -> None:
    """Clear outputs, Run All, and wait until every code cell has run; fail on a traceback."""
    command(page, "notebook:clear-all-cell-outputs")
    command(page, "notebook:run-all-cells")
    deadline = time.monotonic() + timeout
    while True:
        progress = page.evaluate(_PROGRESS)
        assert not progress["errors"], f"a cell failed: {progress['errors']}"
        if progress["total"] and progress["pending"] == 0:
            return
        assert time.monotonic() < deadline, f"{progress['pending']} of {progress['total']} cells still running"
        page.wait_for_timeout(500)


def notebook_text(page) -> str:
    return page.inner_text(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
