"""Running explanation parts on Dask workers (processes), the model shipped once.

A PyHealth model pickles together with ``model.dataset``, every processed
sample included; :func:`shippable` sends a copy whose dataset is a small stub
holding only the schemas and fitted processors (what the model and the
interpreters read), so broadcasting it to every worker is cheap.

Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` for its workers by default,
which made torch work about 2.5x slower here. :func:`local_client` starts
workers without it; for your own cluster put this in the workers' Dask config
(e.g. ``~/.config/dask/distributed.yaml``) before they start::

    distributed:
      nanny:
        pre-spawn-environ:
          MALLOC_TRIM_THRESHOLD_: null

Example:
    ``with local_client(n_workers=2) as client:`` starts worker processes (each imports torch and
    PyHealth: seconds); on a real cluster the one line that changes is
    ``client = Client("tcp://scheduler:8786")``. Here, cheaply, a client whose worker runs in this process:

    >>> import tempfile
    >>> from dask.distributed import Client
    >>> from ehrexplain.cohort import explain_cohort, read_attributions
    >>> data = cohort.dataset.subset(range(16))
    >>> with Client(processes=False, dashboard_address=None) as client:
    ...     out = explain_cohort(model, data, "deeplift", out=tempfile.mkdtemp(), batch_size=8, client=client,
    ...                          progress=False)
    >>> here = explain_cohort(model, data, "deeplift", out=tempfile.mkdtemp(), batch_size=8, progress=False)
    >>> read_attributions(out).equals(read_attributions(here))   # the rows of a run without a cluster
    True
"""

from __future__ import annotations

import copy
import os
import warnings
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch

from .table import explain_batch

#: Dask config key whose ``None`` value keeps the nanny from setting the variable.
MALLOC_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


class DatasetStub:
    """What a trained PyHealth model needs of its dataset: schemas and fitted processors."""

    def __init__(self, dataset):
        for name in ("input_schema", "output_schema", "input_processors", "output_processors"):
            setattr(self, name, getattr(dataset, name))
        self.dataset_name = getattr(dataset, "dataset_name", None)
        self.task_name = getattr(dataset, "task_name", None)


def shippable(interpreter):
    """A deep copy of ``interpreter`` whose model's dataset is a :class:`DatasetStub`.

    The caller's model is restored untouched, also after an error.

    Example:
        >>> from ehrexplain import IntegratedGradients
        >>> light = shippable(IntegratedGradients(model))
        >>> type(light.model.dataset).__name__, model.dataset is cohort.dataset   # the caller's model keeps its own
        ('DatasetStub', True)
    """
    model = interpreter.model
    dataset = model.dataset
    model.dataset = DatasetStub(dataset)
    try:
        return copy.deepcopy(interpreter)
    finally:
        model.dataset = dataset


@contextmanager
def local_client(n_workers: int = 2) -> Iterator["object"]:
    """A ``dask.distributed`` client on a local cluster of single-threaded worker processes.

    Workers start without ``MALLOC_TRIM_THRESHOLD_``; the cluster is closed on exit.
    Scripts using it need an ``if __name__ == "__main__":`` guard.
    """
    import dask
    from dask.distributed import Client, LocalCluster

    with dask.config.set({MALLOC_TRIM_KEY: None}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _configure_worker() -> dict:
    """One torch thread per worker process (as many workers as cores); report the malloc setting."""
    os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # before any PyHealth import
    torch.set_num_threads(1)
    return {"MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_")}


def _explain_part(interpreter, index: int, batch: dict, first_index: int, options: dict):
    return index, explain_batch(interpreter, batch, first_index, options)


def run_on_client(client, interpreter, parts: Iterable, options: dict, write: Callable, in_flight: int | None = None) -> None:
    """Explain ``parts`` (``(index, first_index, batch)``) on ``client``'s workers.

    The interpreter (with its stubbed model) is scattered once to every worker;
    at most ``in_flight`` parts (default: twice the workers) are queued at a
    time, and each finished part is handed to ``write(index, table)`` here, on
    the client, so workers need no shared file system.
    """
    from dask.distributed import as_completed

    settings = client.run(_configure_worker)
    trimmed = sorted(w for w, env in settings.items() if env["MALLOC_TRIM_THRESHOLD_"] is not None)
    if trimmed:
        warnings.warn(
            f"workers {trimmed} run with MALLOC_TRIM_THRESHOLD_ set, which slows torch down; start them with the "
            f"Dask config {MALLOC_TRIM_KEY}: null (see ehrexplain.cluster)",
            stacklevel=3,
        )
    remote = client.scatter(shippable(interpreter), broadcast=True, hash=False)
    in_flight = in_flight or 2 * max(1, len(settings))
    pending = as_completed()
    for index, first, batch in parts:
        pending.add(client.submit(_explain_part, remote, index, batch, first, options, pure=False))
        if pending.count() >= in_flight:
            write(*next(pending).result())
    for future in pending:
        write(*future.result())
