"""Exact DeepLIFT multipliers for every op of an attention model, through a torch function mode.

The model runs once on ``[x; b]`` stacked along the batch dimension, so every
op sees each input row ``z_x`` beside its baseline row ``z_b``. While
:class:`ExactMultipliers` is active, each op that touches an input-dependent
tensor (one that ``requires_grad``; the model's parameters are frozen) gets a
backward whose multiplier makes ``Δout = m · Δin`` hold exactly:

- elementwise ``σ`` (exp, tanh, gelu, rsqrt, ...): Rescale, the secant
  ``(σ(z_x) - σ(z_b)) / (z_x - z_b)`` in float64 (the slope at the midpoint when
  ``z_x = z_b``);
- products of two input-dependent tensors (mul, matmul, bmm, einsum; ``a / b``
  as ``a · (1/b)``): the Shapley split ``Δ(ab) = Δa·(b_x + b_b)/2 + (a_x + a_b)/2·Δb``;
- softmax and layer norm: decomposed into the two rules above and linear maps;
- ``max`` along a dimension: the scaled gradient of Shrikumar et al.'s code, all of
  ``max(z_x) - max(z_b)`` passed to the input's winner (or, where that entry did not
  move, to the baseline's winner), so ``Δout = m · Δin`` holds there too;
- linear ops (view, index, cat, sum, add, linear, masked_fill with a constant
  mask, dropout in eval, ...): the ordinary gradient, which is exact for them.

Exact local rules compose exactly through the chain rule, so the attributions
sum to ``f(x) - f(b)`` up to rounding. Any other op on input-dependent tensors
(fused RNN kernels, sort, ...) runs unchanged with its plain gradient and
is named in :attr:`ExactMultipliers.inexact`. Baseline rows get no gradient.

Each rule pairs row ``i`` of the batch dimension with row ``i + batch / 2``, and
finds that dimension by its size (:func:`pair_dim`). A tensor with another
dimension of the same size is ambiguous: StageNet keeps ``[time, batch, hidden]``,
so a patient alone (2 rows) with 2 visits would have its visits paired instead
of its input and baseline. Such ops are noted in :attr:`ExactMultipliers.ambiguous`,
and :class:`~ehrexplain.methods.DeepLift` runs again with more rows.

The ``"gradient"`` rule (the textbook shortcut, kept for comparison) is a mode of
the same machinery: the Rescale rule only for elementwise ops run inside an
activation module (:data:`RESCALE_ACTIVATIONS`), the plain gradient for every
other op. :func:`multiplier_rules` sets up either.

Example:
    >>> x = torch.tensor([[2.0]], requires_grad=True)
    >>> with ExactMultipliers(batch=2) as rules:
    ...     y = torch.exp(torch.cat([x, torch.zeros(1, 1)]))
    >>> torch.autograd.grad(y[0, 0], x)[0]  # (e² - e⁰) / (2 - 0)
    tensor([[3.1945]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from contextlib import contextmanager
from typing import Iterator

from torch.overrides import TorchFunctionMode

from ..core.exceptions import InexactDeepLiftWarning  # noqa: F401  (its old home; still importable here)
from ..core.model_state import parameters_require_grad
from ._recurrent_unroll import unrollable

#: Below this |z_x - z_b| the Rescale secant is replaced by the slope at the midpoint.
SECANT_TOLERANCE = 1e-10
#: Relative step of the float64 central difference giving the slope where the secant is undefined.
SLOPE_STEP = 1e-6

#: Softmax rows whose input and baseline maxima differ by more than this lose float32 precision:
#: the shared shift leaves one row's sum near ``exp(-gap)`` and its multipliers cancel.
SOFTMAX_CONDITION = 10.0

#: ``"exact"``: exact rules for every op; ``"gradient"``: Rescale inside activation modules only.
MULTIPLIER_RULES = ("exact", "gradient")
#: Activation modules whose elementwise op the ``"gradient"`` rule gives the Rescale multiplier.
RESCALE_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.Sigmoid, nn.Tanh, nn.Softplus, nn.SiLU, nn.Mish, nn.Hardtanh,
)  # fmt: skip


def pair_dim(t: torch.Tensor, batch: int) -> int | None:
    """The dimension holding the stacked ``[x; b]`` batch: 0 if it fits, else the first that does."""
    dims = [d for d, size in enumerate(t.shape) if size == batch]
    return None if not dims else dims[0]


def _midpoints(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``[m; m]`` with ``m = (t_x + t_b) / 2``: each input row paired with its baseline row."""
    x, b = t.detach().chunk(2, dim)
    mid = (x + b) / 2
    return torch.cat([mid, mid], dim)


def _input_rows(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` with its baseline half zeroed: only input rows carry gradient."""
    x, b = t.chunk(2, dim)
    return torch.cat([x, torch.zeros_like(b)], dim)


def _secant(fn, z: torch.Tensor, dim: int) -> torch.Tensor:
    """Rescale multipliers ``[m; 0]`` of elementwise ``fn`` on stacked ``z = [z_x; z_b]``.

    Where ``z_x`` and ``z_b`` (nearly) coincide the secant is replaced by its limit, the
    slope, here a float64 central difference with a step relative to the point (so it
    stays inside the domain of rsqrt, log, ...): its error is far below float32 precision.
    Where the slope is infinite (sqrt at 0) it is taken as 0. Completeness does not
    depend on these values: ``m · Δz`` is 0 whatever ``m`` is when ``Δz`` is 0.
    """
    z_x, z_b = z.detach().double().chunk(2, dim)
    dz = z_x - z_b
    close = dz.abs() <= SECANT_TOLERANCE
    secant = (fn(z_x) - fn(z_b)) / torch.where(close, torch.ones_like(dz), dz)
    if close.any():
        mid = (z_x + z_b) / 2
        step = SLOPE_STEP * torch.where(mid == 0, torch.ones_like(mid), mid.abs())
        slope = (fn(mid + step) - fn(mid - step)) / (2 * step)
        secant = torch.where(close, slope.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0), secant)
    return torch.cat([secant, torch.zeros_like(secant)], dim).to(z.dtype)


class _Rescale(torch.autograd.Function):
    """``fn(z)`` whose backward multiplies by the Rescale secant."""

    @staticmethod
    def forward(ctx, fn, z, dim):
        ctx.save_for_backward(_secant(fn, z, dim))
        return fn(z)

    @staticmethod
    def backward(ctx, grad_output):
        (multiplier,) = ctx.saved_tensors
        return None, grad_output * multiplier, None


class _Bilinear(torch.autograd.Function):
    """``op(a, b)`` (bilinear) whose backward uses the Shapley split of the two factors."""

    @staticmethod
    def forward(ctx, op, a, b, dims):
        ctx.op, ctx.dims = op, dims
        ctx.save_for_backward(a, b)
        return op(a, b)

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        dim_a, dim_b, batch = ctx.dims
        grad = _input_rows(grad_output, pair_dim(grad_output, batch))
        with torch.enable_grad():  # one backward for both: each term depends on one factor only
            a_, b_ = a.detach().requires_grad_(True), b.detach().requires_grad_(True)
            both = ctx.op(a_, _midpoints(b, dim_b)) + ctx.op(_midpoints(a, dim_a), b_)
            grad_a, grad_b = torch.autograd.grad(both, (a_, b_), grad)
        return None, grad_a, grad_b, None


def _winner_multipliers(z: torch.Tensor, dim: int, pair: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where ``max`` along ``dim`` sends each input row's difference, and its multiplier.

    All of ``Δy = max(z_x) - max(z_b)`` goes to one entry ``i`` with ``m = Δy / Δz_i``:
    the input's arg-max, or the baseline's where the input's winner did not move
    (then ``Δy`` is carried by the baseline's winner; both unmoved means ``Δy = 0``).
    Returns ``(index, m)``, shaped like the input half reduced along ``dim`` (kept).
    """
    z_x, z_b = z.detach().double().chunk(2, pair)
    top_x, win_x = z_x.max(dim, keepdim=True)
    top_b, win_b = z_b.max(dim, keepdim=True)
    moved_x = z_x.gather(dim, win_x) - z_b.gather(dim, win_x)
    moved_b = z_x.gather(dim, win_b) - z_b.gather(dim, win_b)
    use_x = moved_x.abs() > SECANT_TOLERANCE
    moved = torch.where(use_x, moved_x, moved_b)
    still = moved.abs() <= SECANT_TOLERANCE
    m = torch.where(still, torch.zeros_like(moved), (top_x - top_b) / torch.where(still, torch.ones_like(moved), moved))
    return torch.where(use_x, win_x, win_b), m.to(z.dtype)


class _WinnerMax(torch.autograd.Function):
    """``z.max(dim)`` whose backward gives the winner the multiplier ``Δy / Δz`` (:func:`_winner_multipliers`)."""

    @staticmethod
    def forward(ctx, z, dim, keepdim, pair):
        index, multiplier = _winner_multipliers(z, dim, pair)
        ctx.save_for_backward(index, multiplier)
        ctx.dim, ctx.keepdim, ctx.pair, ctx.shape = dim, keepdim, pair, z.shape
        values, indices = z.max(dim, keepdim=keepdim)
        ctx.mark_non_differentiable(indices)
        return values, indices

    @staticmethod
    def backward(ctx, grad_values, _grad_indices):
        index, multiplier = ctx.saved_tensors
        grad = grad_values if ctx.keepdim else grad_values.unsqueeze(ctx.dim)
        grad_x = grad.chunk(2, ctx.pair)[0] * multiplier
        half = list(ctx.shape)
        half[ctx.pair] //= 2
        into_x = grad_x.new_zeros(half).scatter(ctx.dim, index, grad_x)
        return torch.cat([into_x, torch.zeros_like(into_x)], ctx.pair), None, None, None


def opaque_modules(model: nn.Module) -> set[str]:
    """Names of ``model``'s fused recurrent kernels that no torch function mode can see and none can unroll."""
    return {f"{type(m).__name__} (fused kernel)" for m in model.modules() if isinstance(m, nn.RNNBase) and not unrollable(m)}


def _tracked(value) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _any_tracked(value) -> bool:
    """Whether ``value`` (a tensor, or tuples, lists and dicts of them) holds an input-dependent tensor.

    Called on every torch op inside the mode, so it walks containers itself (torch's pytree is slower).
    """
    if isinstance(value, torch.Tensor):
        return value.requires_grad
    if isinstance(value, (tuple, list)):
        return any(_any_tracked(v) for v in value)
    if isinstance(value, dict):
        return any(_any_tracked(v) for v in value.values())
    return False


class ExactMultipliers(TorchFunctionMode):
    """Torch function mode giving each op its exact DeepLIFT backward (see the module doc).

    Args:
        batch: rows of the stacked ``[x; b]`` batch (twice the number of samples).
        activations_only: the ``"gradient"`` rule: Rescale only while
            :attr:`activation_depth` > 0 (inside an activation module), plain gradients elsewhere.

    Attributes:
        inexact: names of ops met on input-dependent tensors that have no exact rule.
        ambiguous: names of ops whose tensors have more than one dimension of ``batch`` rows
            (the rule may have paired the wrong rows).
    """

    def __init__(self, batch: int, activations_only: bool = False):
        super().__init__()
        self.batch = batch
        self.inexact: set[str] = set()
        self.ambiguous: set[str] = set()
        self.activations_only = activations_only
        self.activation_depth = 0  # activation modules currently running (hooks of multiplier_rules)
        self._rules = {f: self._elementwise for f in ELEMENTWISE_OPS} if activations_only else self._build_rules()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        outside_activation = self.activations_only and not self.activation_depth
        if outside_activation or not (_any_tracked(args) or _any_tracked(kwargs)):
            return func(*args, **kwargs)
        rule = self._rules.get(func)
        if rule is not None:
            return rule(func, *args, **kwargs)
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        if name not in LINEAR_OPS and _any_tracked(out):
            self.inexact.add(name)
        return out

    # -- the two exact rules ------------------------------------------------------------
    def _pair_dims(self, name: str, *tensors) -> list[int] | None:
        """Each tensor's ``[x; b]`` batch dimension; ``None`` (and ``name`` noted inexact) if one has none."""
        dims = [pair_dim(t, self.batch) for t in tensors]
        if None in dims:
            self.inexact.add(f"{name} (no dimension holds the [input; baseline] batch)")
            return None
        if any(list(t.shape).count(self.batch) > 1 for t in tensors):
            self.ambiguous.add(name)
        return dims

    def rescale(self, fn, z: torch.Tensor, name: str = "elementwise") -> torch.Tensor:
        """``fn(z)`` with the Rescale multiplier (``fn`` elementwise)."""
        dims = self._pair_dims(name, z)
        return fn(z) if dims is None else _Rescale.apply(fn, z, dims[0])

    def product(self, op, a, b, name: str = "mul") -> torch.Tensor:
        """``op(a, b)`` for bilinear ``op``: Shapley split when both factors are input-dependent."""
        if not (_tracked(a) and _tracked(b)):
            return op(a, b)
        dims = self._pair_dims(name, a, b)
        if dims is None:
            return op(a, b)
        out = _Bilinear.apply(op, a, b, (*dims, self.batch))
        self._pair_dims(name, out)  # its backward finds the pair in the output's gradient
        return out

    # -- op rules --------------------------------------------------------------------------
    def _elementwise(self, func, z, *args, **kwargs):
        if _any_tracked(args) or _any_tracked(kwargs):
            self.inexact.add(f"{func.__name__} with an input-dependent exponent or parameter")
            return func(z, *args, **kwargs)
        kwargs.pop("inplace", None)
        return self.rescale(lambda t: func(t, *args, **kwargs), z, func.__name__)

    def _mul(self, func, a, b, **kwargs):
        return self.product(lambda u, v: func(u, v, **kwargs), a, b, func.__name__)

    def _div(self, func, a, b, rounding_mode=None):
        if rounding_mode is not None or not _tracked(b):
            return func(a, b, rounding_mode=rounding_mode) if rounding_mode else func(a, b)
        inverse = self.rescale(torch.reciprocal, b, "reciprocal")
        return self.product(torch.mul, a, inverse) if isinstance(a, torch.Tensor) else a * inverse

    def _rdiv(self, func, b, a):  # a / b with tensor b and scalar a
        return a * self.rescale(torch.reciprocal, b, "reciprocal")

    def _einsum(self, func, equation, *operands):
        operands = operands[0] if len(operands) == 1 and isinstance(operands[0], (list, tuple)) else operands
        if len(operands) == 2:
            return self.product(lambda u, v: torch.einsum(equation, u, v), *operands, name="einsum")
        if sum(_tracked(o) for o in operands) > 1:
            self.inexact.add(f"einsum with {len(operands)} operands")
        return torch.einsum(equation, *operands)

    def _softmax(self, func, z, dim=None, *args, log=False, **kwargs):
        dtype = kwargs.get("dtype")
        z = z if dtype is None else z.to(dtype)
        pair = None if dim is None else self._pair_dims(func.__name__, z)
        if pair is None:
            return func(z, dim)
        row_max_x, row_max_b = z.detach().amax(dim, keepdim=True).chunk(2, pair[0])
        if ((row_max_x - row_max_b).abs() > SOFTMAX_CONDITION).any():
            self.inexact.add(f"{func.__name__} (input and baseline rows' maxima differ by > {SOFTMAX_CONDITION}: ill-conditioned)")
        row_max = torch.maximum(row_max_x, row_max_b)
        shift = torch.cat([row_max, row_max], pair[0])  # shared by each input row and its baseline row
        shifted = z - shift
        exps = self.rescale(torch.exp, shifted, "exp")
        total = exps.sum(dim, keepdim=True)
        if log:
            return shifted - self.rescale(torch.log, total, "log")
        return self.product(torch.mul, exps, self.rescale(torch.reciprocal, total, "reciprocal"))

    def _log_softmax(self, func, z, dim=None, *args, **kwargs):
        return self._softmax(func, z, dim, log=True, **kwargs)

    def _max(self, func, z, dim=None, keepdim=False, **kwargs):
        """``max``/``amax`` along one dimension: the winner rule; other forms run with their plain gradient."""
        reduce_dim = dim[0] if isinstance(dim, (tuple, list)) and len(dim) == 1 else dim
        pair = self._pair_dims(func.__name__, z) if isinstance(reduce_dim, int) and not kwargs else None
        if pair is None or reduce_dim % z.dim() == pair[0]:
            out = func(z, dim, keepdim, **kwargs) if dim is not None else func(z, **kwargs)
            self.inexact.add(f"{func.__name__} (not along one dimension of each patient)")
            return out
        values, indices = _WinnerMax.apply(z, reduce_dim % z.dim(), keepdim, pair[0])
        return values if func in (torch.amax, T.amax) else torch.return_types.max((values, indices))

    def _batch_norm(self, func, z, *args, training=False, **kwargs):
        """Batch norm in eval mode is affine per channel (exact gradient); in training it mixes patients.

        ``F.batch_norm`` hands the torch function mode ``training`` as a keyword.
        """
        if training:
            self.inexact.add("batch_norm (training mode: batch statistics mix the patients)")
        return func(z, *args, training=training, **kwargs)

    def _layer_norm(self, func, z, normalized_shape, weight=None, bias=None, eps=1e-5):
        dims = tuple(range(-len(normalized_shape), 0))
        centred = z - z.mean(dims, keepdim=True)
        variance = self.rescale(torch.square, centred, "square").mean(dims, keepdim=True)
        out = self.product(torch.mul, centred, self.rescale(torch.rsqrt, variance + eps, "rsqrt"))
        out = out if weight is None else out * weight
        return out if bias is None else out + bias

    def _build_rules(self) -> dict:
        rules = {func: self._elementwise for func in ELEMENTWISE_OPS}
        rules.update({func: self._mul for func in PRODUCT_OPS})
        rules.update({func: self._div for func in DIVISION_OPS})
        rules.update({torch.Tensor.__rtruediv__: self._rdiv, torch.Tensor.__rdiv__: self._rdiv})
        rules.update({torch.einsum: self._einsum, F.layer_norm: self._layer_norm, F.batch_norm: self._batch_norm})
        rules.update({func: self._max for func in (torch.max, T.max, torch.amax, T.amax)})
        rules.update({func: self._softmax for func in (F.softmax, torch.softmax, torch.Tensor.softmax)})
        rules.update({func: self._log_softmax for func in (F.log_softmax, torch.log_softmax, torch.Tensor.log_softmax)})
        return rules


@contextmanager
def multiplier_rules(model: nn.Module, batch: int, rule: str = "exact") -> Iterator[ExactMultipliers]:
    """DeepLIFT multipliers for the forward passes run inside: ``rule`` is ``"exact"`` or ``"gradient"``.

    Parameters stop requiring grad inside (only input-dependent tensors do); for
    ``"gradient"``, hooks mark when an activation module runs. All undone after,
    also after an error.

    Example:
        >>> net = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
        >>> x = torch.tensor([[2.0]], requires_grad=True)
        >>> with multiplier_rules(net, batch=2, rule="gradient") as rules:
        ...     y = net(torch.cat([x, torch.zeros(1, 1)]))
        >>> rules.inexact, net[1]._forward_hooks
        (set(), OrderedDict())
    """
    mode = ExactMultipliers(batch, activations_only=rule == "gradient")
    handles = []

    def enter(*_):
        mode.activation_depth += 1

    def leave(*_):
        mode.activation_depth -= 1

    try:
        if rule == "gradient":
            for module in model.modules():  # each instance once, however often the model reuses it
                if isinstance(module, RESCALE_ACTIVATIONS):
                    handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
        with parameters_require_grad(model, False), mode:
            yield mode
    finally:
        for handle in handles:
            handle.remove()


T = torch.Tensor
#: Elementwise nonlinear functions (tensor first): Rescale rule.
ELEMENTWISE_OPS = (
    torch.exp, T.exp, torch.log, T.log, torch.log1p, T.log1p, torch.expm1, T.expm1,
    torch.tanh, T.tanh, F.tanh, torch.sigmoid, T.sigmoid, F.sigmoid, torch.relu, T.relu, F.relu,
    F.gelu, F.elu, F.selu, F.celu, F.leaky_relu, F.softplus, F.silu, F.mish, F.hardtanh, F.relu6,
    F.logsigmoid, F.hardsigmoid, F.hardswish, torch.rsqrt, T.rsqrt, torch.sqrt, T.sqrt,
    torch.reciprocal, T.reciprocal, torch.square, T.square, torch.pow, T.pow, T.__pow__, T.__rpow__,
    torch.abs, T.abs, T.__abs__, torch.erf, T.erf, torch.sin, T.sin, torch.cos, T.cos,
)  # fmt: skip
#: Products (bilinear in their two tensor arguments): Shapley rule when both are input-dependent.
PRODUCT_OPS = (
    torch.mul, T.mul, T.__mul__, T.__rmul__, torch.matmul, T.matmul, T.__matmul__, T.__rmatmul__,
    torch.bmm, T.bmm, torch.mm, T.mm,
)  # fmt: skip
DIVISION_OPS = (torch.div, T.div, T.__truediv__, T.__div__, torch.true_divide, T.true_divide)
#: Linear (or affine with input-independent constants) ops: the ordinary gradient is exact.
LINEAR_OPS = frozenset(
    """view view_as reshape reshape_as flatten unflatten squeeze unsqueeze transpose permute movedim t T mT
    contiguous clone to float double type_as __getitem__ __setitem__ select narrow index_select gather
    expand expand_as repeat tile chunk split unbind cat concat concatenate stack flip roll diagonal
    sum mean cumsum add __add__ __radd__ add_ __iadd__ sub __sub__ __rsub__ sub_ __isub__ neg __neg__
    linear conv1d conv2d dropout masked_fill masked_fill_ where pad embedding_bag squeeze_ unsqueeze_
    copy_ detach requires_grad_ cpu cuda _pack_padded_sequence _pad_packed_sequence
    avg_pool1d avg_pool2d adaptive_avg_pool1d adaptive_avg_pool2d""".split()
)
