"""Every figure a notebook draws is in its stored outputs, as the student meets it.

``ehrexplain.viz`` returns Figures made without pyplot: a cell that only assigns one
(``fig = plot_...(...)``) or ends in ``plt.show()`` displays nothing, and nbval cannot
notice, since an absent output is not a changed one. So the committed notebooks are
scanned: a code cell that draws must hold an image.
"""

import json
import re

import pytest
from conftest import NOTEBOOKS

#: Calls that draw a figure: the package's plot functions and pyplot's figure makers.
DRAWS = re.compile(r"\bplot_\w+\(|\bplt\.(subplots|figure)\(|\bFigure\(")


def _code(cell: dict) -> str:
    return "\n".join(line for line in "".join(cell["source"]).splitlines() if not line.lstrip().startswith("#"))


def images(cell: dict) -> int:
    """How many images the cell's stored outputs show."""
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def cells_drawing_without_an_image(cells: list[dict]) -> list[int]:
    """Indices of the code cells that call a plot function but store no image (cells that raised are skipped).

    Example:
        >>> drawn = {"cell_type": "code", "source": ["fig = plot_convergence(s, d)\\n", "display(fig)"],
        ...          "outputs": [{"output_type": "display_data", "data": {"image/png": "..."}}]}
        >>> cells_drawing_without_an_image([drawn, {**drawn, "outputs": []}])
        [1]
    """
    return [
        index
        for index, cell in enumerate(cells)
        if cell["cell_type"] == "code"
        and DRAWS.search(_code(cell))
        and not any(output["output_type"] == "error" for output in cell.get("outputs", []))
        and not images(cell)
    ]


def image_counts() -> dict[str, int]:
    """The number of images each committed notebook shows (the browser test expects as many on screen)."""
    return {
        path.name: sum(images(cell) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"])
        for path in sorted(NOTEBOOKS.glob("*.ipynb"))
    }


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_every_cell_that_draws_shows_its_figure(notebook):
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    missing = cells_drawing_without_an_image(cells)
    assert not missing, (
        f"cells {missing} draw a figure but store no image: end the cell with the figure or call display(fig), "
        "then re-execute the notebook"
    )


def test_a_figure_that_is_only_assigned_is_caught():
    assigned = {"cell_type": "code", "source": ["fig = plot_code_attributions(codes, scores)"], "outputs": []}
    shown_by_pyplot_only = {**assigned, "source": ["fig = plot_convergence(s, d)\n", "plt.show()"]}
    failed = {**assigned, "outputs": [{"output_type": "error"}]}  # a pitfall demo that raised draws nothing
    assert cells_drawing_without_an_image([assigned, shown_by_pyplot_only, failed]) == [0, 1]
