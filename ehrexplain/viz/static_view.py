"""A widget's current view as plain HTML and PNG, for places without a widget manager.

A notebook opened without a kernel, an untrusted copy, GitHub, nbviewer and
nbconvert cannot draw a widget; they fall back to the other entries of the
display data. :class:`StaticFallback` adds the current figure (``image/png``)
and the current view (``text/html``: control values, messages, figure, HTML
panels) next to the widget view, so those places show the view, not a repr.

Example:
    >>> class Note(StaticFallback, widgets.VBox):   # a box of widgets that also shows without a kernel
    ...     pass
    >>> bundle = Note([widgets.HTML("<b>kept</b>"), widgets.IntText(3, description="patient")])._repr_mimebundle_()
    >>> bundle["text/html"]
    '<div class="ehrexplain-static-view"><div style="color:#555">patient: 3</div><div><b>kept</b></div></div>'
    >>> bundle["text/plain"], "image/png" in bundle    # with a figure (an Image widget) also a base64 PNG
    ('Note: run the notebook to use its controls', False)
"""

from __future__ import annotations

import base64
import html

import ipywidgets as widgets


def _visible(widget) -> bool:
    return widget.layout.display != "none"


def _control_text(widget) -> str | None:
    """``description: shown value`` for a control; ``None`` for other widgets."""
    if not isinstance(widget, widgets.ValueWidget) or not getattr(widget, "description", ""):
        return None
    shown = widget.label if isinstance(widget, widgets.Dropdown) else widget.value
    return f"{widget.description}: {shown}"


def _png_img(png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="figure" style="max-width:100%" src="data:image/png;base64,{data}">'


def static_html(widget) -> str:
    """The visible parts of ``widget`` and its children as one HTML string."""
    controls, parts = [], []

    def walk(node) -> None:
        if not _visible(node):
            return
        if isinstance(node, widgets.Box):
            for child in node.children:
                walk(child)
        elif isinstance(node, widgets.Image):
            if node.value:
                parts.append(_png_img(node.value))
        elif isinstance(node, widgets.HTML):
            if node.value:
                parts.append(f"<div>{node.value}</div>")
        elif (text := _control_text(node)) is not None:
            controls.append(html.escape(text))

    walk(widget)
    header = f'<div style="color:#555">{" · ".join(controls)}</div>' if controls else ""
    return f'<div class="ehrexplain-static-view">{header}{"".join(parts)}</div>'


class StaticFallback:
    """Mixin for ``ipywidgets`` boxes: display data also carries the current view as HTML and PNG."""

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/html"] = static_html(self)
        image = next((w for w in _images(self) if w.value), None)
        if image is not None:
            bundle["image/png"] = base64.b64encode(image.value).decode("ascii")
        bundle["text/plain"] = f"{type(self).__name__}: run the notebook to use its controls"
        return bundle


def _images(widget):
    if isinstance(widget, widgets.Image) and _visible(widget):
        yield widget
    elif isinstance(widget, widgets.Box) and _visible(widget):
        for child in widget.children:
            yield from _images(child)
