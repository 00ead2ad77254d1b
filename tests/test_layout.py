"""The package layout shows its layers: no import cycles, and ``core`` imports nothing above it."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "ehrexplain"
LAYERS_ABOVE_CORE = ("ehrexplain.methods", "ehrexplain.data", "ehrexplain.evaluation", "ehrexplain.cohort",
                     "ehrexplain.viz", "ehrexplain.teaching", "ehrexplain.testing")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every ehrexplain module ``path`` imports, at module level or inside functions."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("ehrexplain")}


GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}
MODULES = set(GRAPH)


def _edges(name: str) -> set[str]:
    """Imported modules of ``name`` that are modules of the package (a package's __init__ counts)."""
    return {m for m in GRAPH[name] if m in MODULES and m != name and not name.startswith(m + ".")}


def test_core_imports_nothing_above_it():
    offending = {name: sorted(m for m in GRAPH[name] if m.startswith(LAYERS_ABOVE_CORE))
                 for name in GRAPH if name.startswith("ehrexplain.core")}
    assert not {k: v for k, v in offending.items() if v}, offending


def test_no_import_cycles():
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in _edges(name):
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_the_cycle_check_finds_a_cycle():
    """The check above can fail: a planted edge back from core to methods is reported."""
    GRAPH["ehrexplain.core.batch"].add("ehrexplain.methods._base")
    try:
        with pytest.raises(pytest.fail.Exception, match="import cycle"):
            test_no_import_cycles()
    finally:
        GRAPH["ehrexplain.core.batch"].discard("ehrexplain.methods._base")
