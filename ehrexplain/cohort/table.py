"""One explained batch as a long-format table: one row per (sample, feature, position).

Padding never becomes a row: token id 0 is PyHealth's padding, and a
continuous time step is padding where the feature's padding mask says so.

Example:
    >>> from ehrexplain import IntegratedGradients
    >>> table = explain_batch(IntegratedGradients(model), batch, first_index=0, options={})
    >>> table.column_names[:4]
    ['sample', 'patient_id', 'visit_id', 'feature']
    >>> table.num_rows == sum(int((batch[key] != 0).sum()) for key in model.feature_keys)   # one row per real token
    True
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from ..core.batch import feature_value, padding_mask


def explain_batch(interpreter, batch: dict, first_index: int, options: dict) -> pa.Table:
    """Run ``interpreter.attribute`` on ``batch`` and return its long-format table.

    ``options`` go to ``attribute``; with ``return_convergence_delta=True`` among
    them the table gets a per-sample ``delta`` column.
    """
    result = interpreter.attribute(**options, **batch)
    scores, delta = result if options.get("return_convergence_delta") else (result, None)
    return attribution_table(interpreter.model, batch, scores, delta, first_index)


def attribution_schema(with_delta: bool) -> pa.Schema:
    """The columns of every part: the same for every batch of a run, ``delta`` only with ``with_delta``.

    Example:
        >>> attribution_schema(with_delta=False).names[-2:]
        ['code', 'score']
    """
    fields = [("sample", pa.int64()), ("patient_id", pa.string()), ("visit_id", pa.string()), ("feature", pa.string()),
              ("position", pa.int32()), ("inner_position", pa.int32()), ("code", pa.string()), ("score", pa.float64())]
    return pa.schema(fields + [("delta", pa.float64())] if with_delta else fields)


def attribution_table(model: nn.Module, batch: dict, scores: dict, delta, first_index: int) -> pa.Table:
    """Long-format rows for every non-padding input value of ``batch``.

    Columns (:func:`attribution_schema`): ``sample`` (``first_index`` + row in the batch), ``patient_id``,
    ``visit_id`` (null when the batch has none), ``feature``, ``position`` (index along
    the sequence / visit / time axis), ``inner_position`` (code within a visit or
    value within a time step; -1 for two-dimensional features), ``code`` (the
    token's vocabulary string; empty for continuous values), ``score`` and, when
    ``delta`` is given, each sample's convergence ``delta``.
    """
    pieces = [_feature_rows(model, key, batch[key], scores[key]) for key in model.feature_keys]
    rows = {name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]}
    sample = rows.pop("row")
    columns = {"sample": pa.array(sample + first_index, pa.int64())}
    columns["patient_id"] = pa.array(np.asarray([str(p) for p in batch["patient_id"]], dtype=object)[sample], pa.string())
    record = batch.get("visit_id", batch.get("record_id"))
    if record is None:
        columns["visit_id"] = pa.nulls(len(sample), pa.string())
    else:
        columns["visit_id"] = pa.array(np.asarray([str(r) for r in record], dtype=object)[sample], pa.string())
    columns["feature"] = pa.array(rows["feature"], pa.string())
    columns["position"] = pa.array(rows["position"], pa.int32())
    columns["inner_position"] = pa.array(rows["inner_position"], pa.int32())
    columns["code"] = pa.array(rows["code"], pa.string())
    columns["score"] = pa.array(rows["score"], pa.float64())
    if delta is not None:
        columns["delta"] = pa.array(delta.detach().cpu().double().numpy()[sample], pa.float64())
    return pa.table(columns, schema=attribution_schema(delta is not None))


def _feature_rows(model: nn.Module, key: str, feature, score: torch.Tensor) -> dict[str, np.ndarray]:
    value = feature_value(model, key, feature).cpu()
    score = score.detach().cpu()
    if score.shape != value.shape:
        raise ValueError(f"scores for {key!r} have shape {tuple(score.shape)} but its values have {tuple(value.shape)}")
    keep = _kept(model, key, feature, value)
    index = keep.reshape(value.shape[0], value.shape[1], -1).nonzero() if value.dim() > 1 else keep[:, None, None].nonzero()
    inner = index[:, 2].numpy() if value.dim() > 2 else np.full(len(index), -1)
    processor = model.dataset.input_processors[key]
    if processor.is_token():
        codes = _vocabulary(processor)[value[keep].long().numpy()]
    else:
        codes = np.full(len(index), "", dtype=object)
    return {
        "row": index[:, 0].numpy(),
        "feature": np.full(len(index), key, dtype=object),
        "position": index[:, 1].numpy(),
        "inner_position": inner,
        "code": codes,
        "score": score[keep].double().numpy(),
    }


def _kept(model: nn.Module, key: str, feature, value: torch.Tensor) -> torch.Tensor:
    """Boolean mask shaped like ``value``: True where the value is data, not padding."""
    if model.dataset.input_processors[key].is_token():
        return value != 0
    if value.dim() < 3:  # a fixed-length vector: every entry is data, zeros included
        return torch.ones_like(value, dtype=torch.bool)
    mask = padding_mask(model, key, feature).cpu().bool()
    while mask.dim() < value.dim():
        mask = mask.unsqueeze(-1)
    return mask.expand_as(value)


def _vocabulary(processor) -> np.ndarray:
    """Array mapping token id to code string (``"<id N>"`` for ids outside the vocabulary)."""
    vocab = processor.code_vocab
    names = np.array([f"<id {i}>" for i in range(max(vocab.values()) + 1)], dtype=object)
    for code, i in vocab.items():
        names[i] = str(code)
    return names
