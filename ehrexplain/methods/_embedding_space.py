"""Where gradient methods move inputs: embedding space for tokens, raw space otherwise.

Integrated Gradients and DeepLift both compare an input ``x`` with a baseline
``b``. Token ids cannot be interpolated (id 61.25 does not exist), so token
features are embedded first and compared there; continuous features stay raw,
so every raw number gets its own attribution. This module holds that logic once.

Example:
    >>> space = AttributionSpace.build(model, batch, baseline=None, use_embeddings=True)
    >>> space.inputs["conditions"].shape, sorted(space.embedded_keys)   # codes embedded: [patients, codes, 32]
    (torch.Size([8, 11, 32]), ['conditions', 'drugs', 'procedures'])
    >>> logits = space.forward(space.inputs, rows=torch.arange(space.batch_size))
    >>> bool(torch.allclose(logits, model(**batch)["logit"], atol=1e-6))   # x in this space is the model's x
    True
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import nn

from ..core.batch import FeatureBatch, unpack_batch
from ..core.model_checks import check_finite_prediction, model_dtype
from ._embedding_hook import embedding_layer, forward_substituted, refusal

#: Default baseline id for token features: PyHealth's UNK token.
UNK_TOKEN_ID = 1
#: Default baseline value for continuous features (PyHealth's near-zero choice).
CONTINUOUS_BASELINE = 1e-2

#: While true (:func:`hook_path`), spaces ignore ``forward_from_embedding`` and substitute embeddings through the hook.
_HOOK_PATH_ONLY: ContextVar[bool] = ContextVar("hook_path_only", default=False)


@contextmanager
def hook_path():
    """While active, every :class:`AttributionSpace` built runs the model's own ``forward`` with its
    embedding layer's output substituted, even where the model has ``forward_from_embedding``.

    For comparing the two paths (``tests/test_embedding_hook.py``, ``bench/bench_model_paths.py``); the
    fast path stays the default.

    Example:
        >>> with hook_path():
        ...     hooked = AttributionSpace.build(model, batch, baseline=None, use_embeddings=True)
        >>> hooked.fast_path, AttributionSpace.build(model, batch, baseline=None, use_embeddings=True).fast_path
        (False, True)
    """
    token = _HOOK_PATH_ONLY.set(True)
    try:
        yield
    finally:
        _HOOK_PATH_ONLY.reset(token)


def embedding_support(model: nn.Module) -> str | None:
    """Why ``model`` cannot be explained in embedding space (``"needs ..."``), or ``None`` when it can."""
    return refusal(model, "this method")


def check_embedding_support(model: nn.Module, method: str) -> None:
    """Raise ``TypeError`` naming why ``method`` cannot run ``model`` with substituted embeddings."""
    reason = refusal(model, method)
    if reason:
        raise TypeError(reason)


def default_baseline(batch: FeatureBatch, use_embeddings: bool) -> dict[str, torch.Tensor]:
    """PyHealth's reference input (UNK for tokens, ``1e-2`` for continuous values), padding kept.

    Example:
        >>> baseline = default_baseline(unpack_batch(model, batch), True)["conditions"]
        >>> bool(torch.equal(baseline, (batch["conditions"] != 0).long()))  # 1 (UNK) where a code is, 0 at padding
        True
    """
    baselines = {}
    for key, value in batch.values.items():
        if use_embeddings and key in batch.token_keys:
            baselines[key] = torch.full_like(value, UNK_TOKEN_ID)
        else:
            dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
            baselines[key] = torch.full_like(value, CONTINUOUS_BASELINE, dtype=dtype)
    return {key: _padding_kept(batch, key, b) for key, b in baselines.items()}


def checked_baseline(batch: FeatureBatch, baseline: dict | None, use_embeddings: bool) -> dict[str, torch.Tensor]:
    """Default baselines overridden by the caller's, each checked against the input shape."""
    baselines = default_baseline(batch, use_embeddings)
    for key, value in (baseline or {}).items():
        if key not in batch.values:
            raise KeyError(f"baseline has unknown feature key {key!r}; the model's feature keys are {sorted(batch.values)}")
        value = torch.as_tensor(value, device=batch.values[key].device)
        if value.shape != batch.values[key].shape:
            raise ValueError(
                f"baseline for {key!r} has shape {tuple(value.shape)} but the input has shape "
                f"{tuple(batch.values[key].shape)}; give one baseline per input value"
            )
        if not torch.isfinite(value).all():
            raise ValueError(f"baseline for {key!r} contains NaN or infinite values")
        baselines[key] = _padding_kept(batch, key, value)
    return baselines


def _padding_kept(batch: FeatureBatch, key: str, baseline: torch.Tensor) -> torch.Tensor:
    """``baseline`` with the input's own values at padding positions.

    Then ``x - b = 0`` there, so padding gets exactly zero attribution, and every
    point of the path still holds padding where the model looks for it: a
    patient's scores do not depend on how much padding its batch added.
    """
    value = batch.values[key]
    real = batch.masks[key].bool()
    while real.dim() < value.dim():
        real = real.unsqueeze(-1)
    if key in batch.token_keys:
        real = real & (value != 0)
    return torch.where(real, baseline.to(value.device), value.to(baseline.dtype))


@dataclass
class AttributionSpace:
    """Input and baseline as points in the space attributions are computed in.

    Attributes:
        batch: the unpacked batch.
        inputs / baselines: per key, ``x`` and ``b`` (embedded for token keys when
            ``use_embeddings``; raw otherwise), detached, in the model's floating dtype.
        embedded_keys: keys that were embedded before comparison.
        use_embeddings: run the model from embeddings.
        fast_path: call the model's ``forward_from_embedding`` (the default where the model has one:
            the numbers of earlier releases); otherwise run the model's own ``forward`` with the
            embedding layer's output substituted, so every model keeps its own reshaping, masking
            and pooling (:func:`hook_path` forces this). The two agree on the demo Transformer
            (``tests/test_embedding_hook.py``), except
            that a model which derives its mask from embedded values (PyHealth's Transformer) sees an
            all-padding baseline as masked out on the hook path.
        bare_keys: keys the caller passed as a bare tensor, passed on as one to the model's own
            ``forward`` (RETAIN, GCN, EHRMamba, ... read a tuple there differently).
    """

    batch: FeatureBatch
    inputs: dict[str, torch.Tensor]
    baselines: dict[str, torch.Tensor]
    embedded_keys: frozenset[str]
    use_embeddings: bool
    fast_path: bool = False
    bare_keys: frozenset[str] = frozenset()

    @classmethod
    def build(cls, model: nn.Module, data: dict, baseline: dict | None, use_embeddings: bool,
              dtype: torch.dtype | None = None) -> "AttributionSpace":
        """Unpack ``data``, check ``baseline`` and embed token features when asked.

        ``dtype`` is the model's (:func:`~ehrexplain.core.model_checks.model_dtype`) when the call has it already.
        """
        batch = unpack_batch(model, data)
        if not use_embeddings and batch.token_keys:
            raise ValueError(
                f"features {sorted(batch.token_keys)} are token ids, which cannot be interpolated; "
                "use use_embeddings=True"
            )
        baselines = checked_baseline(batch, baseline, use_embeddings)
        dtype = dtype or model_dtype(model) or torch.float32
        inputs = {key: value.to(dtype) for key, value in batch.values.items()}
        baselines = {key: value.to(dtype) for key, value in baselines.items()}
        embedded = frozenset(batch.token_keys if use_embeddings else ())
        if embedded:
            embed = embedding_layer(model)
            with torch.no_grad():
                inputs.update(embed({key: batch.values[key] for key in embedded}))
                baselines.update(embed({key: baselines[key].long() for key in embedded}))
        bare = frozenset(key for key in batch.values if isinstance(data[key], torch.Tensor))
        # the model's own entry, where it has one (unless hook_path() asks for the model's forward)
        fast = callable(getattr(model, "forward_from_embedding", None)) and not _HOOK_PATH_ONLY.get()
        return cls(batch, inputs, baselines, embedded, use_embeddings, fast_path=fast, bare_keys=bare)

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of every point (the model's: float32 or float64)."""
        return next(iter(self.inputs.values())).dtype

    @property
    def batch_size(self) -> int:
        return next(iter(self.batch.values.values())).shape[0]

    @property
    def rows(self) -> torch.Tensor:
        """``[0, 1, ..., batch_size - 1]``: every sample once, for :meth:`forward`."""
        return torch.arange(self.batch_size, device=next(iter(self.inputs.values())).device)

    def forward(self, points: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """Logits for ``points`` (one row per entry of ``rows``, the sample each row copies).

        Masks, times and other tuple parts are taken from sample ``rows[i]``.
        """
        model = self.batch.model
        device = rows.device
        if not self.use_embeddings:
            return self._finite(forward_substituted(model, self._own_kwargs(points, rows), {}, {}, len(rows), device), rows)
        raw = {key: point for key, point in points.items() if key not in self.embedded_keys}
        embedded = {key: point for key, point in points.items() if key in self.embedded_keys}
        try:
            if self.fast_path:
                if raw:  # continuous features are attributed in raw space, embedded here
                    embedded = {**embedded, **embedding_layer(model)(raw)}
                logits = model.forward_from_embedding(**self.batch.forward_kwargs(embedded, rows))["logit"]
            else:  # the model's own forward embeds the token ids, and the hook swaps in the points
                ids = {key: self.batch.values[key][rows] for key in embedded}
                logits = forward_substituted(model, self._own_kwargs(raw, rows), embedded, ids, len(rows), device)
        except (ValueError, RuntimeError) as error:  # the model's own limits, named for the user
            if type(error) not in (ValueError, RuntimeError):
                raise  # specific subclasses (out of memory, ...) speak for themselves
            shapes = {key: tuple(point.shape) for key, point in points.items()}
            entry = "forward_from_embedding" if self.fast_path else "forward (embeddings substituted)"
            message = (
                f"{type(model).__name__}.{entry} failed on the embedded inputs {shapes}: {error} "
                "(the model's own code raised this; a model may not support every feature type, e.g. "
                "PyHealth's MLP has no nested-sequence path from embeddings)"
            )
            raise type(error)(message) from error
        return self._finite(logits, rows)

    def logits(self, points: dict[str, torch.Tensor], chunks) -> torch.Tensor:
        """Logits of every sample of ``points`` (one row per sample) without a graph, a chunk of sample ids a pass.

        Example:
            >>> space = AttributionSpace.build(model, batch, baseline=None, use_embeddings=True)
            >>> chunked = space.logits(space.inputs, space.rows.split(3))   # passes of 3, 3 and 2 patients
            >>> bool(torch.allclose(chunked, model(**batch)["logit"], atol=1e-6))
            True
        """
        with torch.no_grad():
            return torch.cat([self.forward({key: point[rows] for key, point in points.items()}, rows) for rows in chunks])

    def _own_kwargs(self, values: dict[str, torch.Tensor], rows: torch.Tensor) -> dict:
        """:meth:`FeatureBatch.forward_kwargs` in the caller's layout, for the model's own ``forward``."""
        kwargs = self.batch.forward_kwargs(values, rows)
        return {key: parts[0] if key in self.bare_keys else parts for key, parts in kwargs.items()}

    def _finite(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``logits``, or a ``ValueError`` naming the samples whose prediction is NaN or infinite."""
        check_finite_prediction(self.batch.model, logits, rows, self.batch.masks)
        return logits

    def to_raw_shapes(self, attributions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sum embedded keys over the embedding dimension: one score per input value.

        The leading dimension is kept (the batch, or any rows of it, e.g. path points).
        """
        out = {}
        for key, attr in attributions.items():
            if key in self.embedded_keys:
                attr = attr.sum(dim=-1)
            out[key] = attr.reshape(attr.shape[:1] + self.batch.values[key].shape[1:]).detach()
        return out


def target_logit(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per row, the logit of that row's target class."""
    return logits.gather(1, targets[:, None]).squeeze(1)


def sample_totals(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[batch]``: each sample's attributions summed over every feature key and position."""
    return sum(score.reshape(score.shape[0], -1).sum(dim=1) for score in scores.values())


def convergence_delta(scores: dict[str, torch.Tensor], gap: torch.Tensor) -> torch.Tensor:
    """Per sample, ``Σ attributions - (f(x) - f(b))``: the completeness error."""
    return sample_totals(scores) - gap
