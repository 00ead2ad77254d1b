"""Notebook prose says only what the notebook computes.

Two mechanisms, each proven here the way ``test_notebook_checks.py`` proves the
method checks:

* A sentence that states a number or ranks methods is rendered by
  ``ehrexplain.teaching.say`` from the values beside it, with ``holds=`` for a
  comparison. The tests below perturb a library function so that a stated
  comparison becomes false, run the notebook's code cells in order, and expect
  the run to stop with ``ClaimError`` at the cell that states it.
* Markdown cells hold no hand-typed numbers (:func:`uncomputed_numbers`): a
  number typed into prose cannot follow a re-run, so every Markdown cell of
  every notebook is scanned for digits outside the documented allowlist.
"""

import json
import re

import pytest
import scipy.stats
from conftest import NOTEBOOKS, code_cells, notebook_run, run_until

import ehrexplain.methods.attention_rollout as rollout_module
from ehrexplain.teaching import ClaimError


def run_until_an_error(name: str) -> tuple[str, BaseException]:
    """Execute the notebook's code cells in order; return the source of the cell that raised, and the error.

    Cells tagged ``raises-exception`` (the pitfall demos) may raise.
    """
    _, source, error = run_until(name, Exception, "one of its claims was made false")
    return source, error


def test_rollout_notebook_refuses_a_discard_trend_that_no_longer_holds(monkeypatch):
    """Bug: discard_ratio has no effect, so 'the largest score rises' becomes false."""
    monkeypatch.setattr(rollout_module, "discard_lowest", lambda attn, ratio: attn)
    source, error = run_until_an_error("02_attention_rollout.ipynb")
    assert isinstance(error, ClaimError), error
    assert "Discarding weak weights" in source


def test_chefer_notebook_refuses_an_agreement_claim_that_no_longer_holds(monkeypatch):
    """Perturbed rank correlation (always 1): 'the two rankings agree only partly' becomes false."""
    real = scipy.stats.spearmanr

    def perfect_agreement(a, b, *args, **kwargs):
        result = real(a, b, *args, **kwargs)
        return type("Result", (), {"statistic": 1.0, "pvalue": result.pvalue})()

    monkeypatch.setattr(scipy.stats, "spearmanr", perfect_agreement)
    source, error = run_until_an_error("03_chefer_relevance.ipynb")
    assert isinstance(error, ClaimError), error
    assert "agree only partly" in source


def test_deeplift_notebook_refuses_a_comparison_that_no_longer_holds(monkeypatch):
    """A qualitative claim: the exact rules agree with IG better than the fallback. Perturbed rank correlation
    (the same for both rules) makes that comparison false, and the notebook must stop where it states it."""
    real = scipy.stats.spearmanr

    def constant_agreement(a, b, *args, **kwargs):
        result = real(a, b, *args, **kwargs)
        return type("Result", (), {"statistic": 0.5, "pvalue": result.pvalue})()

    monkeypatch.setattr(scipy.stats, "spearmanr", constant_agreement)
    source, error = run_until_an_error("05_deeplift.ipynb")
    assert isinstance(error, ClaimError), error
    assert "Rank agreement with IG" in source and "a > b (a = 0.5, b = 0.5)" in str(error)


def test_synthetic_notebook_refuses_a_model_above_its_ceiling(monkeypatch):
    """Perturbed AUROC of the model (1.0): 'the noise-free score is the ceiling' becomes false."""
    import ehrexplain.data as data

    monkeypatch.setattr(data, "model_auroc", lambda *args, **kwargs: 1.0)  # where the notebook imports it from
    source, error = run_until_an_error("01_synthetic_ehr_and_models.ipynb")
    assert isinstance(error, ClaimError), error
    assert "the ceiling" in source


# --------------------------------------------------------------------------- hand-typed numbers in Markdown

#: Parts of Markdown that are not prose claims: code, link targets, URLs, HTML tags.
NOT_PROSE = [r"```.*?```", r"`[^`\n]*`", r"\]\([^)]*\)", r"<https?://[^>]*>", r"https?://\S+", r"<[^>]+>"]

#: Digits that name things rather than state results. Each entry says why it is allowed.
NAMES_NOT_NUMBERS = [
    r"arXiv:\d{4}\.\d{4,5}",  # arXiv identifiers (before years: they start like one)
    r"(?m)^#+\s*\d{2}\s*·",  # a notebook's number in its title: "# 02 · Attention Rollout"
    r"(?m)^#+\s*\d+[a-z]?(\.\d+)*\.",  # section numbers: "## 3. With ehrexplain", "### 4b. Another seed"
    r"(?i)\bnotebooks?\s+\d{2}(\s*(,|and|to|or|–|-)\s*\d{2})*",  # references to other notebooks: "notebook 07"
    r"\b\d{2}\s*·",  # notebook titles in link text: "[04 · Integrated Gradients]"
    r"\b(Exercises?|exercises?|[Ss]ections?|steps?)\s+\d+",  # exercise and section numbers
    r"\b(19|20)\d{2}\b",  # publication years in citations: "ACL 2020"
    r"\bPython\s+3\.\d+|\bPyHealth\s+\d+(\.\d+)*(\.x)?",  # software versions
    r"\bICD-10\b",  # a coding system's name
    r"\b(label|class|classes)\s*=?\s*\d\b(\s*and\s*\d\b)?",  # class names: "label 1", "p(label = 1)", "classes 0 and 1"
    r"(?i)\b(row|position|id|ids|layer|head)\s+\d+\b",  # indices and token ids: "row 0", "id 1"
    # the fixed end points of a score's scale, true by definition: "(0.5 = random ranking, 1 = perfect)" for AUROC,
    # "1 = same order, 0 = unrelated" for a rank correlation
    r"\b(0\.5|0|1)\s*=\s*(random ranking|perfect|same order|unrelated)\b",
]

MATH = r"\$\$.*?\$\$|\$[^$\n]*\$"
DECIMAL = r"\d+\.\d+"


def uncomputed_numbers(markdown: str) -> list[str]:
    """Snippets of ``markdown`` holding a digit that is neither code, a name, nor an integer inside a formula.

    Formulas may hold integers (exponents, indices, ``\\tfrac12``) but no decimals: a decimal is a measured value.

    Example:
        >>> uncomputed_numbers("IG recovers 0.77 of the codes (notebook 07, Sundararajan 2017); $R = (1/2)^L$")
        ['IG recovers 0.77 of t', 'recovers 0.77 of the']
    """
    found = [f"math {m}" for m in re.findall(MATH, markdown, flags=re.S) if re.search(DECIMAL, m)]
    text = re.sub(MATH, " ", markdown, flags=re.S)
    for pattern in NOT_PROSE + NAMES_NOT_NUMBERS:
        text = re.sub(pattern, " ", text, flags=re.S)
    for match in re.finditer(r"\d+", text):
        found.append(text[max(0, match.start() - 12) : match.end() + 8].strip())
    return found


def test_the_digit_scan_catches_a_hand_typed_number_and_passes_names():
    assert uncomputed_numbers("the median is 0.19 over 90 patients")  # a result typed by hand
    assert uncomputed_numbers("reach $|\\delta| = 0.0004$")  # a decimal inside a formula is a value too
    assert not uncomputed_numbers("## 3. Check\nSee notebook 07, exercise 2, ACL 2020, `steps=32`, p(label = 1).")
    assert not uncomputed_numbers("$R = \\hat A_L \\cdots \\hat A_1$ with $\\hat A_l = \\tfrac12(A_l + I)$, row 0")


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_markdown_cells_state_no_uncomputed_numbers(notebook):
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    problems = {
        index: found
        for index, cell in enumerate(cells)
        if cell["cell_type"] == "markdown" and (found := uncomputed_numbers("".join(cell["source"])))
    }
    assert not problems, f"hand-typed numbers in Markdown (render them with teaching.say): {problems}"


# --------------------------------------------------------------------------- exercises a student can check

SOLUTION = r"<summary>Solutions?</summary>\s*```python\n(.*?)```"


@pytest.mark.parametrize(
    "notebook",
    ["00_quickstart.ipynb", "01_synthetic_ehr_and_models.ipynb", "02_attention_rollout.ipynb",
     "03_chefer_relevance.ipynb", "04_integrated_gradients.ipynb", "05_deeplift.ipynb", "06_split_interface.ipynb",
     "07_comparing_and_evaluating.ipynb", "08_your_own_data.ipynb", "09_real_patients.ipynb"],
)
def test_the_shown_solutions_pass_every_checker_and_the_placeholders_do_not(notebook, capsys):
    """Run the notebook as stored (placeholders), then its shown solutions, then every checker cell again."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    solutions = [s for c in cells if c["cell_type"] == "markdown" for s in re.findall(SOLUTION, "".join(c["source"]), re.S)]
    checkers = [source for _, source, _ in code_cells(notebook) if "grade(" in source]
    assert solutions and checkers, "every notebook of the series ends with checkable exercises and shown solutions"
    namespace: dict = {}
    with notebook_run():
        for _, source, tags in code_cells(notebook):
            if "raises-exception" not in tags:
                exec(compile(source, notebook, "exec"), namespace)
        as_stored = capsys.readouterr().out
        assert "not answered yet" in as_stored and "✓ correct" not in as_stored
        for source in solutions + checkers:
            exec(compile(source, notebook, "exec"), namespace)
    graded = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("✓ correct", "✗", "…"))]
    assert graded and all(line == "✓ correct" for line in graded), graded
