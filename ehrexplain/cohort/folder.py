"""The folder :func:`~ehrexplain.cohort.explain_cohort` writes: a Parquet dataset that proves itself.

Every file in it is Parquet, so ``pandas.read_parquet(out)``, ``pyarrow.dataset.dataset(out)``,
``dask.dataframe.read_parquet(out)`` and ``polars.read_parquet(out)`` open the folder as it is:

- ``part-NNNNNN.parquet``: the rows of part N (consecutive samples);
- ``_manifest.parquet``: no rows, the parts' schema, and in its key-value metadata (key
  ``ehrexplain``) the run's settings and, for each finished part, its row count and the
  SHA-256 of its file. pandas, pyarrow and Dask skip ``_`` files; polars reads it as zero rows.

One run owns the folder at a time: it holds an exclusive ``flock`` on the folder itself (the
OS releases it when the process ends, even on ``kill -9``). A second run with other settings is
refused at once, naming the settings that differ; one with the same settings waits, then
finishes what the first left. Files are written under hidden per-process names
(``.NAME.tmp-PID``) and renamed into place, and the manifest is rewritten after each part, so
a part on disk is one the manifest lists. On claiming, stale temporary files, parts the manifest
does not list and parts whose checksum disagrees are removed (then recomputed).

Example:
    >>> import tempfile
    >>> from ehrexplain import AttentionRollout
    >>> from ehrexplain.cohort.table import explain_batch
    >>> table = explain_batch(AttentionRollout(model), batch, first_index=0, options={})
    >>> out, settings = Path(tempfile.mkdtemp()), {"method": "rollout", "batch_size": 8, "n_samples": 8}
    >>> with RunFolder(out).claim(settings, table.schema) as folder:
    ...     folder.write_part(0, table)      # atomically, then recorded in the manifest
    >>> sorted(path.name for path in out.iterdir())
    ['_manifest.parquet', 'part-000000.parquet']
    >>> len(read_folder(out)) == table.num_rows   # verified parts, in sample order
    True
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "_manifest.parquet"
#: The manifest of the earlier layout (parts without checksums), read but never resumed.
OLD_MANIFEST = "manifest.json"
METADATA_KEY = b"ehrexplain"
FORMAT = 2
_PART = re.compile(r"part-(\d{6})\.parquet")
_TEMP = re.compile(r"\.(part-\d{6}\.parquet|_manifest\.parquet)\.tmp-\d+")


def part_name(index: int) -> str:
    """File name of part ``index``: ``part-000003.parquet``."""
    return f"part-{index:06d}.parquet"


class RunFolder:
    """One ``explain_cohort`` output folder, claimed by this process while a run writes it."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.manifest: dict = {}
        self.schema: pa.Schema | None = None

    @contextmanager
    def claim(self, settings: dict, schema: pa.Schema):
        """Own the folder for the ``with`` block: create it, or check its settings and verify its parts."""
        self.out.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.out, os.O_RDONLY)
        try:
            _lock(handle, self.out, settings)
            self._open(settings, schema)
            yield self
        finally:
            os.close(handle)  # releases the lock

    def done(self) -> set[int]:
        """Indices of the parts already written (all verified when the folder was claimed)."""
        return {int(index) for index in self.manifest["parts"]}

    def write_part(self, index: int, table: pa.Table) -> None:
        """Write part ``index`` atomically, then record its row count and checksum in the manifest."""
        if table.schema != self.schema:
            raise ValueError(f"part {index} has schema {table.schema} but this run writes {self.schema}")
        data, path = _parquet_bytes(table), self.out / part_name(index)
        _atomic_write(path, data)
        self.manifest["parts"][str(index)] = {"rows": table.num_rows, "sha256": hashlib.sha256(data).hexdigest()}
        try:
            self._save()
        except BaseException:
            del self.manifest["parts"][str(index)]
            path.unlink()  # a part on disk is always one the manifest lists
            raise

    def _open(self, settings: dict, schema: pa.Schema) -> None:
        found = read_manifest(self.out)
        if found is None:
            _refuse_foreign(self.out)
            found = {"format": FORMAT, "settings": settings, "parts": {}}
        _check_settings(self.out, found["settings"], settings)
        self.manifest, self.schema = found, schema
        for path in self.out.iterdir():
            if _TEMP.fullmatch(path.name):
                path.unlink()  # we hold the lock: no other run is writing it
        for path in self.out.glob("part-*.parquet"):
            index = _PART.fullmatch(path.name)
            entry = found["parts"].get(str(int(index.group(1)))) if index else None
            if entry is None or _damage(path, path.read_bytes(), entry):
                path.unlink()
        found["parts"] = {k: v for k, v in found["parts"].items() if (self.out / part_name(int(k))).exists()}
        self._save()

    def _save(self) -> None:
        empty = self.schema.empty_table().replace_schema_metadata({METADATA_KEY: json.dumps(self.manifest)})
        _atomic_write(self.out / MANIFEST, _parquet_bytes(empty))


def read_manifest(out: Path) -> dict | None:
    """The manifest of ``out`` (settings and parts), or ``None`` when it has none."""
    path = Path(out) / MANIFEST
    try:
        metadata = pq.read_schema(path).metadata or {}
        return json.loads(metadata[METADATA_KEY])
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError, KeyError, ValueError) as error:
        raise ValueError(f"cannot read the manifest {path}: {error}; delete the folder and rerun explain_cohort") from error


def read_folder(out: Path) -> pd.DataFrame:
    """Every part ``out``'s manifest lists, each checked against its checksum, in sample order.

    Raises ``ValueError`` naming a part that is missing, damaged or unreadable, and warns when the
    run is unfinished. A folder of the earlier layout (``manifest.json``) is read without checks.
    """
    out = Path(out)
    manifest = read_manifest(out)
    if manifest is None:
        if (out / OLD_MANIFEST).exists():
            return _concat([_read_part(path, path.read_bytes()) for path in sorted(out.glob("part-*.parquet"))], None)
        raise FileNotFoundError(f"no {MANIFEST} in {out}; run explain_cohort(..., out={str(out)!r}) first")
    frames = []
    for key in sorted(manifest["parts"], key=int):
        path = out / part_name(int(key))
        data = path.read_bytes() if path.exists() else None
        problem = _damage(path, data, manifest["parts"][key])
        if problem:
            raise ValueError(f"part {path} {problem}; rerun explain_cohort on {str(out)!r} with the same settings to recompute it")
        frames.append(_read_part(path, data))
    settings = manifest["settings"]
    n_parts = -(-settings["n_samples"] // settings["batch_size"])
    if len(frames) < n_parts:
        warnings.warn(f"{out} holds {len(frames)} of {n_parts} parts: the run is unfinished; rerun explain_cohort "
                      "with the same settings to finish it", stacklevel=3)
    return _concat(frames, pq.read_schema(out / MANIFEST))


def _concat(frames: list[pd.DataFrame], schema: pa.Schema | None) -> pd.DataFrame:
    if not frames:
        return schema.empty_table().to_pandas() if schema is not None else pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def _read_part(path: Path, data: bytes) -> pd.DataFrame:
    try:
        return pq.read_table(pa.BufferReader(data)).to_pandas()
    except pa.ArrowException as error:
        raise ValueError(f"cannot read part {path}: {error}") from error


def _damage(path: Path, data: bytes | None, entry: dict) -> str | None:
    """What is wrong with a part's bytes against its manifest entry, or ``None`` when it is intact."""
    if data is None:
        return "is missing"
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        return f"does not match its checksum ({len(data)} bytes; truncated or changed since it was written)"
    return None  # the checksum covers the row count the manifest records


def _lock(handle: int, out: Path, settings: dict) -> None:
    """Take the folder's exclusive lock; refuse at once if its owner runs other settings, else wait."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    found = read_manifest(out)
    if found is not None:
        _check_settings(out, found["settings"], settings)
    warnings.warn(f"another run is writing {out} with the same settings; waiting for it to finish", stacklevel=4)
    fcntl.flock(handle, fcntl.LOCK_EX)


def _check_settings(out: Path, found: dict, wanted: dict) -> None:
    differs = sorted(key for key in found.keys() | wanted.keys() if found.get(key) != wanted.get(key))
    if differs:
        details = "; ".join(f"{key}: {found.get(key)!r} there, {wanted.get(key)!r} now" for key in differs)
        raise ValueError(f"{out} holds parts written with other settings ({details}); use a new out directory or delete it")


def _refuse_foreign(out: Path) -> None:
    """Refuse, touching nothing, a folder without a manifest that holds more than stale temporary files."""
    if (out / OLD_MANIFEST).exists():
        raise ValueError(
            f"{out} was written by an earlier ehrexplain (it has {OLD_MANIFEST}, parts without checksums); "
            "read it with read_attributions, and write new runs to a new out directory"
        )
    if any(not _TEMP.fullmatch(path.name) for path in out.iterdir()):
        raise ValueError(f"out={str(out)!r} exists, is not empty and has no {MANIFEST}; choose an empty or new directory")


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden per-process temporary name, then rename it to ``path``."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
