"""Save views for people without Jupyter: standalone HTML (widgets included) and PNG.

The HTML file embeds the widgets' state and a local copy of the
``@jupyter-widgets/html-manager`` renderer (vendored in ``viz/static``), so it
opens offline in any browser: no CDN, no network.

Example:
    >>> import tempfile
    >>> from ehrexplain.viz.widgets import ExplanationExplorer
    >>> explorer, folder = ExplanationExplorer(model, cohort), Path(tempfile.mkdtemp())
    >>> page = save_html(explorer, folder / "explanation.html").read_text()
    >>> page.startswith("<!DOCTYPE html>"), "application/vnd.jupyter.widget-state+json" in page
    (True, True)
    >>> save_png(explorer.figure, folder / "explanation.png").read_bytes()[1:4]
    b'PNG'
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

#: The vendored renderer: @jupyter-widgets/html-manager 1.0.15, dist/embed.js (BSD-3-Clause).
RENDERER = "html-manager-embed.js"

#: The renderer is a webpack bundle that, when it starts, derives its "public path"
#: from the ``src`` of the page's first script and stops ("Automatic publicPath is
#: not supported in this browser") when no script has one, as for an inlined
#: bundle. This first script has a ``src`` (the page's own folder) but a type no
#: browser runs or fetches, so it only gives the bundle that path.
PUBLIC_PATH_SCRIPT = '<script type="application/x-ehrexplain-public-path" src="./"></script>'

#: Labels in the sans-serif font JupyterLab uses (not the browser's serif default).
PAGE_STYLE = (
    "<style>body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;"
    "--jp-ui-font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;"
    "--jp-widgets-font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif}</style>"
)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<title>{title}</title>
{public_path}
{style}
<script>{renderer}</script>
<script type="application/vnd.jupyter.widget-state+json">
{state}
</script>
</head>
<body>
{views}
</body>
</html>
"""


def renderer_script() -> str:
    """The vendored widget renderer's JavaScript source."""
    return resources.files("ehrexplain.viz").joinpath("static", RENDERER).read_text(encoding="utf-8")


def widget_page(widget, title: str = "ehrexplain") -> str:
    """A standalone HTML page showing ``widget`` (and the widgets it contains)."""
    from ipywidgets.embed import dependency_state, embed_data, escape_script

    data = embed_data(views=[widget], state=dependency_state([widget], drop_defaults=True))
    views = "\n".join(
        '<script type="application/vnd.jupyter.widget-view+json">\n'
        + escape_script(json.dumps(spec))
        + "\n</script>"
        for spec in data["view_specs"]
    )
    return _PAGE.format(
        title=html.escape(title),
        public_path=PUBLIC_PATH_SCRIPT,
        style=PAGE_STYLE,
        renderer=renderer_script(),
        state=escape_script(json.dumps(data["manager_state"], sort_keys=True)),
        views=views,
    )


def save_html(view, path, title: str = "ehrexplain") -> Path:
    """Write ``view`` (a widget, or an HTML string such as a token heat map) to a standalone file."""
    from ipywidgets import Widget

    if not isinstance(view, (str, Widget)):
        raise TypeError(
            f"save_html needs an ipywidgets widget (e.g. an ExplanationExplorer) or an HTML string; "
            f"got {type(view).__name__}"
        )
    path = Path(path)
    if isinstance(view, str):
        text = f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="UTF-8"><title>{html.escape(title)}</title></head>\n<body>\n{view}\n</body>\n</html>\n'
    else:
        text = widget_page(view, title)
    path.write_text(text, encoding="utf-8")
    return path


def save_png(figure, path, dpi: int = 150) -> Path:
    """Write a matplotlib Figure to ``path`` as PNG."""
    path = Path(path)
    figure.savefig(path, format="png", dpi=dpi)
    return path
