"""Tests for ehrexplain.viz.html: deterministic, escaped, self-contained HTML."""

import re

import numpy as np
import pytest
import torch

from ehrexplain.viz import attribution_table_html, token_heatmap_html

TOKENS = ["C01", "C02", "C<3>"]
SCORES = [0.8, -0.4, 0.0]
NAMES = {"C01": "sepsis & shock"}


def _spans(text):
    return re.findall(r"<span[^>]*>.*?</span>", text)


def test_same_input_same_string_and_id_changes_output():
    a = token_heatmap_html(TOKENS, SCORES, element_id="p0", names=NAMES, title="Patient 0")
    b = token_heatmap_html(list(TOKENS), torch.tensor(SCORES), element_id="p0", names=dict(NAMES), title="Patient 0")
    assert a == b
    c = token_heatmap_html(TOKENS, SCORES, element_id="p1", names=NAMES, title="Patient 0")
    assert a != c
    assert a.startswith('<div id="p0"') and c.startswith('<div id="p1"')


def test_one_span_per_token_self_contained_and_escaped():
    text = token_heatmap_html(TOKENS, SCORES, element_id="p0", names=NAMES, title="<b>title</b>")
    assert len(_spans(text)) == 3 and text.count("<span") == 3
    assert "<script" not in text.lower() and "http" not in text.lower()
    assert "<link" not in text and "<style" not in text
    assert "C&lt;3&gt;" in text and "C<3>" not in text
    assert "&lt;b&gt;title&lt;/b&gt;" in text
    assert 'title="C01 — sepsis &amp; shock: 0.800"' in text
    assert 'title="C02: -0.400"' in text


def test_colours_encode_sign_and_magnitude():
    spans = _spans(token_heatmap_html(TOKENS, SCORES, element_id="p0"))
    assert "rgba(214,39,40,1.000)" in spans[0]  # largest positive: full red
    assert "rgba(31,119,180,0.500)" in spans[1]  # half as large, negative: blue
    assert ",0.000)" in spans[2]  # zero: transparent


def test_unsigned_and_all_zero_scores():
    spans = _spans(token_heatmap_html(["a", "b"], np.array([0.25, 1.0]), element_id="u"))
    assert "rgba(214,39,40,0.250)" in spans[0] and "rgba(214,39,40,1.000)" in spans[1]
    spans = _spans(token_heatmap_html(["a", "b"], [0.0, -0.0], element_id="z"))
    assert all(",0.000)" in s and "-0.000" not in s for s in spans)


@pytest.mark.parametrize("bad", ["", "1abc", "has space", 'x"onload="', "a.b", None, 3])
def test_bad_element_id(bad):
    with pytest.raises(ValueError, match="element_id"):
        token_heatmap_html(TOKENS, SCORES, element_id=bad)


def test_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match=r"tokens has length 3 but scores has length 2"):
        token_heatmap_html(TOKENS, [0.1, 0.2], element_id="p0")


def test_non_finite_scores_rejected():
    with pytest.raises(ValueError, match="NaN"):
        token_heatmap_html(["a"], [float("nan")], element_id="p0")


def test_attribution_table():
    rows = [{"method": "IG", "AUC": 0.12345}, {"method": "<rollout>", "AUC": np.float32(0.5), "note": "ok"}]
    text = attribution_table_html(rows, element_id="tbl")
    assert text == attribution_table_html(rows, element_id="tbl")
    assert text.startswith('<table id="tbl"')
    assert [re.sub("<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>.*?</th>", text)] == ["method", "AUC", "note"]
    assert text.count("<tr>") == 3 and text.count("<td") == 6
    assert "0.123" in text and "0.500" in text and "&lt;rollout&gt;" in text
    with pytest.raises(ValueError, match="element_id"):
        attribution_table_html(rows, element_id="9")
