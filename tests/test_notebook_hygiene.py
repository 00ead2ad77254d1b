"""What a student reads in a stored notebook: checks that speak, no noise, no hidden warnings, public API only.

Static scans of the committed notebooks (sources and outputs); each rule comes with a
self-test that shows it catches what it forbids.
"""

import ast
import json
import re

import pytest
from conftest import NOTEBOOKS, code_cells

ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def bare_asserts(source: str) -> list[int]:
    """Line numbers of ``assert`` statements: a check in a notebook uses ``teaching.check``, which says what held.

    Example:
        >>> bare_asserts("check(x > 0, 'x is positive')\\nassert x > 0")
        [2]
    """
    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assert)]


#: ``filterwarnings("ignore")`` with no message or module: it would also hide this package's own warnings.
BLANKET_FILTER = re.compile(r"""(filterwarnings|simplefilter)\(\s*["']ignore["']\s*\)""")
PRIVATE_IMPORT = re.compile(r"\bfrom\s+ehrexplain(\.\w+)*\._\w+|\bimport\s+ehrexplain(\.\w+)*\._\w+|\bfrom\s+ehrexplain(\.\w+)*\s+import\s+_")
#: A tqdm bar as text: stored, it stays frozen wherever the run left it.
PROGRESS_BAR = re.compile(r"\d+%\|")


def noise(cell: dict) -> list[str]:
    """What a stored code cell shows that the student should not see: stderr, progress bars.

    Example:
        >>> noise({"outputs": [{"output_type": "stream", "name": "stderr", "text": ["warn"]}]})
        ['stderr: warn']
    """
    found = []
    for output in cell.get("outputs", []):
        text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
        if output.get("name") == "stderr":
            found.append(f"stderr: {text[:200]}")
        elif PROGRESS_BAR.search(text):
            found.append(f"progress bar: {text[:200]}")
    return found


@pytest.mark.parametrize("notebook", ALL)
def test_checks_speak_no_bare_assert(notebook):
    found = {index: lines for index, source, _ in code_cells(notebook) if (lines := bare_asserts(source))}
    assert not found, f"bare assert in cells {found}: use teaching.check(condition, 'what it verified, with numbers')"


@pytest.mark.parametrize("notebook", ALL)
def test_no_blanket_warning_filter_and_no_private_import(notebook):
    for index, source, _ in code_cells(notebook):
        assert not BLANKET_FILTER.search(source), f"cell {index}: filter the specific warning (message=, module=)"
        assert not PRIVATE_IMPORT.search(source), f"cell {index} imports a private module: teach the public API"


@pytest.mark.parametrize("notebook", ALL)
def test_stored_outputs_hold_no_stderr_or_progress_bar(notebook):
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    found = {index: text for index, cell in enumerate(cells) if cell["cell_type"] == "code" and (text := noise(cell))}
    assert not found, found


def test_the_scans_catch_what_they_forbid():
    assert bare_asserts("assert rows.sum() == 1") == [1]
    assert BLANKET_FILTER.search('warnings.filterwarnings("ignore")')
    assert not BLANKET_FILTER.search('warnings.filterwarnings("ignore", message="X", module="pyhealth")')
    assert PRIVATE_IMPORT.search("from ehrexplain._inputs import unpack_batch")
    assert PRIVATE_IMPORT.search("from ehrexplain.core import _private")
    assert not PRIVATE_IMPORT.search("from ehrexplain.core import unpack_batch")
    frozen = {"outputs": [{"output_type": "execute_result", "data": {"text/plain": "Epoch 0 / 6:   0%|    | 0/11"}}]}
    assert noise(frozen) and not noise({"outputs": [{"output_type": "stream", "name": "stdout", "text": "✓ ok"}]})
