"""Explain every sample of a cohort, in resumable Parquet parts, here or on a Dask cluster.

:func:`explain_cohort` cuts a PyHealth dataset (or walks a dataloader) into
parts of ``batch_size`` samples, explains each part and writes it atomically
to ``out/part-NNNNNN.parquet``. ``out/_manifest.parquet`` records the method,
its options, the batch size, the number of samples, a fingerprint of the
model's weights and each finished part's row count and checksum
(:mod:`.folder`): a rerun with the same settings verifies the parts and
computes only the missing or damaged ones; a rerun with different ones refuses
instead of mixing results. One run writes a folder at a time. The folder is a
plain Parquet dataset: ``pandas.read_parquet(out)`` and polars, pyarrow or Dask
read it as it is.

Example:
    >>> import tempfile
    >>> from ehrexplain.data import demo
    >>> d = demo()
    >>> out = explain_cohort(d.model, d.cohort.dataset.subset(d.test), "integrated_gradients", out=tempfile.mkdtemp(),
    ...                      steps=32, progress=False)
    >>> sorted(path.name for path in out.iterdir())     # 90 held-out patients in parts of 64
    ['_manifest.parquet', 'part-000000.parquet', 'part-000001.parquet']
    >>> means = read_attributions(out).groupby("code").score.mean()
    >>> set(means.nlargest(3).index) <= set(d.cohort.rule.risk_codes)   # the planted risk codes score highest
    True
"""

from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.sources import as_source, loader_shuffles
from .folder import RunFolder, read_folder
from .table import attribution_schema, explain_batch

DEFAULT_BATCH_SIZE = 64


def explain_cohort(model, data, method, out, batch_size: int | None = None, client=None, progress: bool = True, **options) -> Path:
    """Explain every sample of ``data`` with ``method`` and write long-format Parquet parts.

    Args:
        model: a trained PyHealth model.
        data: a PyHealth ``SampleDataset`` (e.g. ``cohort.dataset``, or a task's
            samples) or a non-shuffling ``DataLoader`` over one.
        method: ``"rollout"``, ``"chefer"``, ``"integrated_gradients"``,
            ``"deeplift"`` or an interpreter instance built on ``model``.
        out: directory for ``part-NNNNNN.parquet`` files and ``_manifest.parquet``;
            a Parquet dataset any Parquet reader opens.
        batch_size: samples per part (default 64; a dataloader brings its own).
        client: a ``dask.distributed.Client``: parts run on its workers with
            results identical to in-process. ``None`` runs here. Locally use
            :func:`ehrexplain.cluster.local_client`; on a real cluster the one
            line that changes is ``client = Client("tcp://scheduler:8786")``.
        progress: show a tqdm progress bar (samples).
        **options: constructor options of a named method (e.g. ``steps``) and
            ``attribute`` options (e.g. ``target_class_idx``). IG and DeepLIFT
            always report each sample's convergence ``delta``.

    Returns:
        ``out`` as a ``Path``; read it with :func:`read_attributions`.

    Raises:
        TypeError / ValueError naming the bad argument; ValueError when ``out``
            holds parts written with other settings (also while another run
            writes them; with the same settings this run waits for it, then
            finishes what it left).

    Example:
        >>> import tempfile
        >>> data = cohort.dataset.subset(range(20))
        >>> out = explain_cohort(model, data, "deeplift", out=tempfile.mkdtemp(), batch_size=8, progress=False)
        >>> table = read_attributions(out)
        >>> table.columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
        ['sample', 'patient_id', 'visit_id', 'feature', 'position', 'inner_position', 'code', 'score', 'delta']
        >>> table["sample"].nunique(), len(list(out.glob("part-*.parquet")))    # 20 samples in parts of 8
        (20, 3)
        >>> explain_cohort(model, data, "deeplift", out=out, batch_size=8, progress=False) == out  # done: no new part
        True
    """
    out = _checked_out(out)
    interpreter, attribute_options = _interpreter(model, method, options)
    parts = CohortParts(data, batch_size)
    schema = attribution_schema(with_delta=bool(attribute_options.get("return_convergence_delta")))
    with RunFolder(out).claim(_settings(interpreter, method, options, parts), schema) as folder:
        done = folder.done()
        bar = tqdm(total=parts.n_samples, unit="sample", disable=not progress, desc="explain_cohort")
        bar.update(sum(parts.size(i) for i in done))

        def write(index: int, table) -> None:
            folder.write_part(index, table)
            bar.update(parts.size(index))

        try:
            if client is None:
                for index, first, batch in parts.batches(skip=done):
                    write(index, explain_batch(interpreter, batch, first, attribute_options))
            else:
                from .cluster import run_on_client

                run_on_client(client, interpreter, parts.batches(skip=done), attribute_options, write)
        finally:
            bar.close()
    return out


def read_attributions(out) -> pd.DataFrame:
    """All parts written by :func:`explain_cohort` to ``out``, in sample order, each verified.

    Raises ``ValueError`` naming any part that is missing, damaged or unreadable
    (rerun ``explain_cohort`` with the same settings to recompute it) and warns
    when the run is unfinished.

    Example:
        >>> import tempfile
        >>> data = cohort.dataset.subset(range(8))
        >>> out = explain_cohort(model, data, "rollout", out=tempfile.mkdtemp(), progress=False)
        >>> conditions = read_attributions(out).query("feature == 'conditions'")
        >>> conditions.groupby("sample").score.sum().round(6).unique().tolist()   # rollout shares out 1 per key
        [1.0]
    """
    return read_folder(_checked_out(out))


class CohortParts:
    """A dataset or dataloader seen as numbered parts of consecutive samples."""

    def __init__(self, data, batch_size):
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(data, (DataLoader, Dataset)):
            data = as_source(data).dataset  # a Cohort or a PatientSource; TypeError naming what is accepted
        if isinstance(data, DataLoader):
            if loader_shuffles(data):
                raise ValueError("data is a shuffling DataLoader; parts must be the same on every run: use shuffle=False")
            if batch_size is not None and batch_size != data.batch_size:
                raise ValueError(f"batch_size={batch_size} but the DataLoader has batch_size={data.batch_size}; leave it out")
            self.loader, self.dataset, self.batch_size = data, data.dataset, data.batch_size
        elif isinstance(data, Dataset) and hasattr(data, "input_processors"):
            self.loader, self.dataset, self.batch_size = None, data, batch_size or DEFAULT_BATCH_SIZE
        else:
            raise TypeError(
                f"data must be a PyHealth SampleDataset (e.g. cohort.dataset) or a DataLoader over one, "
                f"got {type(data).__name__}"
            )
        self.n_samples = len(self.dataset)
        self.n_parts = -(-self.n_samples // self.batch_size)

    def size(self, index: int) -> int:
        """Number of samples in part ``index``."""
        return min(self.batch_size, self.n_samples - index * self.batch_size)

    def batches(self, skip=frozenset()):
        """Yield ``(index, first_sample, batch)`` for every part not in ``skip``."""
        if self.loader is not None:
            for index, batch in enumerate(self.loader):
                if index not in skip:
                    yield index, index * self.batch_size, batch
            return
        from pyhealth.datasets.utils import collate_fn_dict_with_padding

        for index in range(self.n_parts):
            if index not in skip:
                first = index * self.batch_size
                samples = [self.dataset[i] for i in range(first, first + self.size(index))]
                yield index, first, collate_fn_dict_with_padding(samples)


def _checked_out(out) -> Path:
    if isinstance(out, bool) or not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a directory path (str or pathlib.Path), got {type(out).__name__}")
    return Path(out)


def _interpreter(model, method, options: dict):
    """The interpreter for ``method`` and the options its ``attribute`` takes."""
    from ..methods import Interpreter, method_spec

    if isinstance(method, str):
        spec = method_spec(method)
        init, options = spec.split(options)
        interpreter = spec.cls(model, **init)
    elif isinstance(method, Interpreter):
        if method.model is not model:
            raise ValueError("method is an interpreter built on another model; build it on the model you pass")
        interpreter = method
    else:
        raise TypeError(f"method must be a method name or an ehrexplain interpreter, got {type(method).__name__}")
    accepted = set(inspect.signature(interpreter.attribute).parameters) - {"data"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"{type(interpreter).__name__} takes no option(s) {unknown}; it accepts {sorted(accepted)}")
    if "return_convergence_delta" in accepted:
        options = {**options, "return_convergence_delta": True}
    return interpreter, options


def _settings(interpreter, method, options: dict, parts: CohortParts) -> dict:
    """What must be equal for two runs to share a folder."""
    weights = hashlib.sha256()
    for name, tensor in interpreter.model.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return {
        "method": method if isinstance(method, str) else type(method).__name__,
        "options": {key: repr(value) for key, value in sorted(options.items())},
        "batch_size": parts.batch_size,
        "n_samples": parts.n_samples,
        "model_sha256": weights.hexdigest(),
    }
