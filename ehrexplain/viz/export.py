"""Save views for people without Jupyter: standalone HTML (widgets included) and PNG.

The HTML file embeds the widgets' state and a local copy of the
``@jupyter-widgets/html-manager`` renderer (vendored in ``viz/static``), so it
opens offline in any browser: no CDN, no network.

Example:
    >>> # save_html(ExplanationExplorer(model, cohort), "explanation.html")
    >>> # save_png(explorer.figure, "explanation.png")
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

#: The vendored renderer: @jupyter-widgets/html-manager 1.0.15, dist/embed.js (BSD-3-Clause).
RENDERER = "html-manager-embed.js"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<title>{title}</title>
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
        renderer=renderer_script(),
        state=escape_script(json.dumps(data["manager_state"], sort_keys=True)),
        views=views,
    )


def save_html(view, path, title: str = "ehrexplain") -> Path:
    """Write ``view`` (a widget, or an HTML string such as a token heat map) to a standalone file."""
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
