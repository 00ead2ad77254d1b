"""Peak memory of a notebook kernel, to check the notebooks fit Binder (2 GB, we aim for < 1.5 GB).

Runs each notebook in a fresh kernel, then asks the kernel for its peak resident
set size (``VmHWM``; ``ru_maxrss`` where there is no ``/proc``). Prints one line per notebook.

Usage:
    .venv/bin/python scripts/notebook_memory.py notebooks/*.ipynb
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

#: The kernel's peak resident set in KiB: Linux's ``VmHWM`` belongs to the kernel's own address space, while
#: ``ru_maxrss`` survives ``exec`` and so also counts the process the kernel was forked from (a test run
#: that has grown to 1.5 GB would make every kernel it starts look that large).
PEAK_RSS_CELL = """
import re, resource
try:
    with open("/proc/self/status") as status:
        print(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def kernel_peak_mib(path: Path) -> float:
    """Execute the notebook at ``path`` and return its kernel's peak RSS in MiB."""
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PEAK_RSS_CELL))
    NotebookClient(notebook, timeout=300, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    output = notebook.cells[-1].outputs[0]["text"]
    return int(output.strip()) / 1024  # ru_maxrss is in KiB on Linux


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: peak kernel memory {kernel_peak_mib(Path(name)):.0f} MiB")
