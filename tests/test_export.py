"""Export: standalone HTML with embedded widget state and a local renderer; PNG."""

import json
import re

import pytest

from ehrexplain.viz import plot_code_attributions, token_heatmap_html
from ehrexplain.viz.export import renderer_script, save_html, save_png
from ehrexplain.viz.widgets import ExplanationExplorer


def test_widget_page_is_standalone(tmp_path, demo_transformer, demo_cohort):
    explorer = ExplanationExplorer(demo_transformer, demo_cohort, index=4)
    path = save_html(explorer, tmp_path / "explorer.html", title="Patient 4")
    page = path.read_text(encoding="utf-8")
    assert "<title>Patient 4</title>" in page
    assert "<script src" not in page and "cdn.jsdelivr" not in page.replace(renderer_script(), "")
    assert renderer_script() in page  # the renderer is inlined from the vendored copy
    state = json.loads(re.search(r'widget-state\+json">\n(.*?)\n</script>', page, re.S).group(1))
    models = state["state"]
    assert explorer.model_id in models and explorer.image.model_id in models
    html_values = [m["state"].get("value", "") for m in models.values() if m["model_name"] == "HTMLModel"]
    assert any('id="ehrexplain-rollout-4"' in v for v in html_values)
    view = json.loads(re.search(r'widget-view\+json">\n(.*?)\n</script>', page, re.S).group(1))
    assert view["model_id"] == explorer.model_id


def test_vendored_renderer_is_the_html_manager():
    script = renderer_script()
    assert "application/vnd.jupyter.widget-state+json" in script and "@jupyter-widgets/controls" in script
    assert "</script" not in script.lower()  # safe to inline


def test_html_string_and_png(tmp_path):
    snippet = token_heatmap_html(["E11.9", "I10"], [0.5, -0.2], element_id="heat")
    page = save_html(snippet, tmp_path / "heat.html").read_text(encoding="utf-8")
    assert snippet in page and page.startswith("<!DOCTYPE html>")
    png = save_png(plot_code_attributions(["E11.9", "I10"], [0.5, -0.2]), tmp_path / "bars.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_html_rejects_what_it_cannot_show(tmp_path):
    with pytest.raises(TypeError, match="needs an ipywidgets widget .* or an HTML string; got NoneType"):
        save_html(None, tmp_path / "none.html")
    assert not (tmp_path / "none.html").exists()


def test_page_gives_the_inlined_renderer_a_public_path(tmp_path, demo_transformer, demo_cohort):
    """The bundle takes its public path from the first script's src; without one the page stays blank."""
    page = save_html(ExplanationExplorer(demo_transformer, demo_cohort), tmp_path / "e.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script[^>]*>", page)
    assert re.search(r'src="[^"]+"', scripts[0]) and 'type="application/x-' in scripts[0]  # never run or fetched
    assert scripts[1] == "<script>" and page.index(renderer_script()) > page.index(scripts[0])
