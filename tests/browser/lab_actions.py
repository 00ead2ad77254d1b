"""What a student does in JupyterLab, as Playwright steps (used by the browser tests).

Each step acts on one notebook tab: the one named ``name`` (its path under the lab's root),
or the current tab when no name is given. Several notebooks can be open, and running, in
one page at once.
"""

from __future__ import annotations

#: JavaScript prelude: ``panel`` is the notebook tab named ``name`` (else the current tab).
_PANEL = """const app = window.jupyterapp;
  const panel = name ? [...app.shell.widgets('main')].find(w => w.context && w.context.path === name)
                     : app.shell.currentWidget;"""

#: JavaScript: cells still to run, cells run, and error outputs, of the notebook. Polled while cells
#: run, so it reads each output's type and never serialises the outputs (figures are large).
_PROGRESS = f"""(name) => {{
  {_PANEL}
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const expected = c => (c.model.getMetadata('tags') || []).includes('raises-exception');
  const done = c => c.model.executionCount !== null && !c.promptNode.textContent.includes('*');
  const outputs = c => Array.from({{length: c.model.outputs.length}}, (_, i) => c.model.outputs.get(i));
  return {{
    pending: cells.filter(c => !done(c)).length,
    total: cells.length,
    errors: cells.filter(c => !expected(c)).flatMap(outputs).filter(o => o.type === 'error')
      .map(o => o.toJSON()).map(o => `${{o.ename}}: ${{o.evalue}}`),
  }};
}}"""

#: JavaScript: whether the notebook's kernel is started and idle.
_KERNEL_IDLE = f"""(name) => {{
  {_PANEL}
  const s = panel && panel.sessionContext;
  return Boolean(s && s.session && s.session.kernel && s.kernelDisplayStatus === 'idle');
}}"""


def open_notebook(page, lab, name: str) -> None:
    """Load JupyterLab in ``page`` with ``name`` open, and wait for its kernel."""
    workspace = name.removesuffix(".ipynb").replace(" ", "_")  # one per notebook, reset: no tabs of other tests
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{name}?reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.context", timeout=60_000)
    page.wait_for_function(_KERNEL_IDLE, arg=None, timeout=60_000)


def open_tab(page, name: str) -> None:
    """Open ``name`` in another tab of the JupyterLab already loaded in ``page``; wait for its kernel."""
    command(page, "docmanager:open", {"path": name, "factory": "Notebook"})
    page.wait_for_function(_KERNEL_IDLE, arg=name, timeout=60_000)


def shut_down_kernel(page, name: str) -> None:
    """Stop the kernel of ``name`` (its tab and outputs stay), freeing its memory for the next notebook."""
    page.evaluate(f"async (name) => {{ {_PANEL} await panel.sessionContext.shutdown(); }}", name)


def command(page, name: str, args: dict | None = None) -> None:
    """Run a JupyterLab command (as the menus do) and wait for it to finish."""
    page.evaluate("async ([name, args]) => { await window.jupyterapp.commands.execute(name, args); }",
                  [name, args or {}])


def activate(page, name: str) -> None:
    """Bring the tab of ``name`` to the front (so it is laid out, measured and screenshotted)."""
    page.evaluate(f"(name) => {{ {_PANEL} app.shell.activateById(panel.id); }}", name)


def start_run_all(page, name: str | None = None) -> None:
    """Clear outputs and Run All; returns at once (the command's promise ends only with the last cell)."""
    if name:
        activate(page, name)  # the notebook commands act on the current tab
    command(page, "notebook:clear-all-cell-outputs")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def finished(page, name: str | None = None) -> bool:
    """Whether every code cell has run; fails on a traceback from a cell not tagged raises-exception."""
    progress = page.evaluate(_PROGRESS, name)
    assert not progress["errors"], f"a cell failed: {progress['errors']}"
    return bool(progress["total"]) and progress["pending"] == 0


#: JavaScript: widget views in the notebook's outputs (by its model), how many drew a widget, how
#: many are wider than their output area (must scroll inside, not as a whole), how many images are blank.
_WIDGET_VIEWS = f"""(name) => {{
  {_PANEL}
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const mime = 'application/vnd.jupyter.widget-view+json';
  const outputs_of = c => Array.from({{length: c.model.outputs.length}}, (_, i) => c.model.outputs.get(i));
  const expected = cells.flatMap(outputs_of).filter(o => o.data && o.data[mime]).length;
  const outputs = [...panel.node.querySelectorAll('.jp-OutputArea-output')];
  const drawn = outputs.filter(o => o.querySelector(':scope > .jupyter-widgets')).length;
  const images = [...panel.node.querySelectorAll('.jp-OutputArea-output img.widget-image')];
  const wide = outputs.map(o => o.querySelector(':scope > .jupyter-widgets'))
    .filter(w => w && w.scrollWidth > w.parentElement.clientWidth + 1).length;
  return {{expected, drawn, wide, blank_images: images.filter(i => !(i.complete && i.naturalWidth > 0)).length}};
}}"""


def widget_views(page, name: str | None = None) -> dict:
    """Counts of the notebook's widget views: expected, drawn, too wide, blank images."""
    return page.evaluate(_WIDGET_VIEWS, name)


def notebook_text(page) -> str:
    """The visible text of the current notebook tab."""
    return page.inner_text(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")


#: JavaScript: the figures (PNG outputs that are not a widget view's fallback) the notebook's model holds, and how many the page drew with real pixels.
_FIGURES = f"""(name) => {{
  {_PANEL}
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const outputs_of = c => Array.from({{length: c.model.outputs.length}}, (_, i) => c.model.outputs.get(i));
  const widget = 'application/vnd.jupyter.widget-view+json';  // a view's PNG is its fallback, not a figure
  const stored = cells.flatMap(outputs_of).filter(o => o.data && o.data['image/png'] && !o.data[widget]).length;
  const images = [...panel.node.querySelectorAll('.jp-OutputArea .jp-RenderedImage img')];
  return {{stored, drawn: images.filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0).length}};
}}"""


def figures(page, name: str | None = None) -> dict:
    """Counts of the notebook's PNG figures: stored in its outputs, and drawn on the page."""
    return page.evaluate(_FIGURES, name)
