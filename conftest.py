"""Doctests (``pytest --doctest-modules ehrexplain``): the objects the docstring examples use.

Examples in ``ehrexplain`` may use, without building them, the notebooks' demo objects:

- ``cohort``: the demo's synthetic cohort (300 patients, a planted rule, ``cohort.ground_truth``);
- ``model``: the demo Transformer trained on 70 % of it (``ehrexplain.data.demo()``);
- ``batch``: a held-out batch of 8 patients, as a PyHealth dataloader gives it (``cohort.batch(test[:8])``);
- ``torch``.

They are built once per session, and only when a doctest reads them before binding them itself: the
normal tests never build anything here (``tests/conftest.py`` has their fixtures). Doctests run on one torch thread, as the
notebooks do, so the demo model is the notebooks' model, and ``tempfile.mkdtemp()`` inside an example
makes its folder under pytest's ``tmp_path``, so examples that write files leave nothing behind.
"""

import ast
import os
import tempfile
from functools import lru_cache

import pytest
from _pytest.doctest import DoctestItem

# Importing ehrexplain's modules to collect their doctests imports PyHealth, and litdata (under it)
# asks PyPI for a newer version at import: no network in tests (tests/conftest.py does the same).
os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")


@lru_cache(maxsize=None)
def _demo():
    from ehrexplain.data.demo import demo

    return demo()


def _batch():
    d = _demo()
    return dict(d.cohort.batch(d.test[:8]))  # a fresh dict per example: one may add or replace keys


def _torch():
    import torch

    return torch


#: Name an example may use -> how to get it (built on first use, then cached).
PROVIDED = {"cohort": lambda: _demo().cohort, "model": lambda: _demo().model, "batch": _batch, "torch": _torch}


def _names_read(item: DoctestItem) -> set[str]:
    """Names the examples read before binding them (``cohort = make_cohort()`` reads no ``cohort``)."""
    read, bound = set(), set()
    for example in item.dtest.examples:
        try:
            names = [node for node in ast.walk(ast.parse(example.source)) if isinstance(node, ast.Name)]
        except SyntaxError:
            continue
        stored = {node.id for node in names if isinstance(node.ctx, ast.Store)}
        read |= {node.id for node in names if isinstance(node.ctx, ast.Load)} - bound - stored
        bound |= stored
    return read


@pytest.fixture(autouse=True)
def _doctest_objects(request):
    """For a doctest item only: put the objects it reads into its globals, and run it on one torch thread."""
    if not isinstance(request.node, DoctestItem):
        yield
        return
    import torch

    names = _names_read(request.node)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        namespace = request.getfixturevalue("doctest_namespace")
        for name in names & PROVIDED.keys():
            namespace[name] = PROVIDED[name]()
        if "tempfile" in names:  # tempfile.mkdtemp() then makes its folder in this test's tmp_path
            request.getfixturevalue("monkeypatch").setattr(tempfile, "tempdir", str(request.getfixturevalue("tmp_path")))
        yield
    finally:
        torch.set_num_threads(threads)
