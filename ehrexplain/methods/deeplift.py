"""DeepLIFT: attribute differences from a baseline in one pass, exactly complete.

Paper: Shrikumar, Greenside & Kundaje, "Learning Important Features Through
Propagating Activation Differences", ICML 2017. https://arxiv.org/abs/1704.02685
(Rescale rule); the product rule is the Shapley value of a product's two factors,
as in Ancona et al., "Towards better understanding of gradient-based attribution
methods", ICLR 2018, and DeepSHAP (Lundberg & Lee, NeurIPS 2017).

Algorithm:
    1. Run input ``x`` and baseline ``b`` through the model together (``2 × patients``
       rows a pass), so every op sees each ``z_x`` beside its ``z_b``. The patients
       go in chunks of ``internal_batch_size`` (by default as many as hold
       ``PASS_TOKENS`` input values in their two rows, ``_chunking``).
    2. Give every op a backward whose multiplier ``m`` satisfies ``Δout = m · Δin``
       (``multiplier_rule="exact"``, the default; rules in ``_deeplift_rules``):
       Rescale secants ``(σ(z_x) - σ(z_b)) / (z_x - z_b)`` for elementwise ops,
       the Shapley split ``Δ(ab) = Δa·(b_x + b_b)/2 + (a_x + a_b)/2·Δb`` for
       products of two input-dependent tensors (attention's ``QKᵀ`` and ``AV``),
       softmax and layer norm decomposed into those, ``max`` along a dimension passing
       its difference to the winner (Shrikumar et al.'s scaled gradient), plain
       gradients for linear ops (eval batch norm and average pooling included).
    3. Backpropagate the target logit of the ``x`` rows; the gradient at the
       input is the multiplier ``m_i``; attributions are ``(x_i - b_i) m_i``.

Exactness invariant: exact local rules compose exactly through the chain rule,
so ``Σ attributions = f(x) - f(b)`` up to float rounding on every model built
from linear, elementwise, product, softmax, layer-norm and max ops (PyHealth's MLP,
Transformer, StageAttentionNet, CNN, Deepr; RNN, GRU and LSTM layers run unrolled, ``_recurrent_unroll``).
Ops without an exact rule (LSTM projections, sort, ...) keep their plain gradient and are named in an
``InexactDeepLiftWarning``, with the patients (batch rows) whose delta exceeds
rounding. Each patient's rows meet only their own rows, so a batch, in chunks
or not, gives what each patient gets alone (where a model tensor has another
dimension as long as a pass's ``[x; b]`` rows, the pass runs again with more
rows, :data:`EXTRA_PAIRS`).
The remaining gap, the convergence delta, is
returned on request and never hidden; forcing completeness by rescaling is an
explicit opt-in. ``multiplier_rule="gradient"`` is the textbook shortcut kept for
comparison: Rescale only on activation modules, the plain gradient elsewhere,
exact on ReLU networks but not through softmax, layer norm or attention.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import torch

from ..core.exceptions import InexactDeepLiftWarning
from ..core.model_state import evaluation_mode, gradients_enabled
from ..core.validation import Option
from ._base import Interpreter, TargetIndex
from ._chunking import AUTO, INTERNAL_BATCH_SIZE, pass_pairs, tokens_per_row
from ._deeplift_rules import MULTIPLIER_RULES, multiplier_rules, opaque_modules
from ._embedding_space import AttributionSpace, check_embedding_support, convergence_delta, embedding_support, sample_totals, target_logit
from ._ig_tolerance import GAP_FLOOR
from ._recurrent_unroll import unrolled_recurrences
from .registry import register_method

#: A patient's DeepLift counts as exact when ``|δ| <= ROUNDING × max(|f(x) - f(b)|, GAP_FLOOR)`` (float32 rounding).
ROUNDING = 1e-4
#: Most patients an :class:`InexactDeepLiftWarning` names.
MAX_NAMED = 20
#: Extra ``(input, baseline)`` row pairs DeepLift tries, one more each time, when some
#: tensor of the model has another dimension as long as the ``[x; b]`` batch.
EXTRA_PAIRS = 8


@register_method(
    "deeplift", label="DeepLIFT", signed=True, class_specific=True, uses_baseline=True, has_delta=True,
    needs_gradients=True, needs_attention=False, supports=embedding_support,
    options=(
        Option("use_embeddings", bool, True, "init"),
        Option("multiplier_rule", str, "exact", "init", choices=MULTIPLIER_RULES),
        Option("return_convergence_delta", bool, False),
        Option("enforce_completeness", bool, False),
        INTERNAL_BATCH_SIZE,
    ),
)
class DeepLift(Interpreter):
    """DeepLIFT (Rescale + Shapley product rules) for PyHealth models, with an honest completeness delta.

    Args:
        model: a PyHealth model (``forward_from_embedding`` and
            ``get_embedding_model`` needed when ``use_embeddings``).
        use_embeddings: compare token features in embedding space (needed for codes).
        multiplier_rule: ``"exact"`` (rules for every op: Σ scores = f(x) - f(b)) or
            ``"gradient"`` (Rescale on activation modules, plain gradient elsewhere).

    Example:
        >>> from ehrexplain import DeepLift
        >>> scores, delta = DeepLift(model).attribute(**batch, return_convergence_delta=True)
        >>> scores["conditions"].shape, delta.shape   # delta: Σ scores - (f(x) - f(b)) per patient
        (torch.Size([8, 11]), torch.Size([8]))
        >>> unk = {**batch, **{key: (batch[key] != 0).long() for key in model.feature_keys}}  # the default baseline b
        >>> gap = (model(**batch)["logit"] - model(**unk)["logit"]).squeeze(1).detach()  # f(x) - f(b)
        >>> bool((delta.abs() <= 1e-4 * gap.abs()).all())   # float rounding only, unless a warning names an op
        True
    """

    def __init__(self, model, use_embeddings: bool = True, multiplier_rule: str = "exact"):
        if use_embeddings:
            check_embedding_support(model, "DeepLift")
        super().__init__(model)
        self.use_embeddings = use_embeddings
        self.multiplier_rule = multiplier_rule

    def attribute(
        self,
        baseline: dict[str, torch.Tensor] | None = None,
        target_class_idx: TargetIndex = None,
        return_convergence_delta: bool = False,
        enforce_completeness: bool = False,
        internal_batch_size: int | str | None = AUTO,
        **data,
    ):
        """Attributions shaped like each feature's raw values.

        Args:
            baseline: per feature key, a tensor shaped like the input values.
            target_class_idx: class to explain (int or ``[batch]``); default: predicted.
            return_convergence_delta: also return ``Σ attributions - (f(x) - f(b))``.
            enforce_completeness: rescale each sample's attributions so they sum
                to ``f(x) - f(b)`` (PyHealth's behaviour). This *hides* the
                error of any inexact op (or of the "gradient" rule); off by default.
                The delta returned is the one measured before rescaling. Warns
                (``RuntimeWarning``) when the rescaling flips a sample's signs or
                scales it by more than 10x.
            internal_batch_size: patients per forward pass, each bringing two rows (its
                input and its baseline). ``"auto"`` (default): as many as hold ``PASS_TOKENS``
                (16,384) input values, at most ``PASS_ROWS / 2``; ``None``: the whole batch at
                once. The scores do not depend on it.

        Returns:
            ``{key: scores}``, or ``(scores, delta)`` with ``return_convergence_delta``.
        """
        with evaluation_mode(self.model, self._call.tree), gradients_enabled():
            space = AttributionSpace.build(self.model, data, baseline, self.use_embeddings, self._call.dtype)
            pairs = pass_pairs(internal_batch_size, tokens_per_row(space.batch.values))
            chunks = space.rows.split(pairs or space.batch_size)  # patients per pass
            logits, reference = space.logits(space.inputs, chunks), space.logits(space.baselines, chunks)
            targets = self._targets(logits)
            gap = target_logit(logits, targets) - target_logit(reference, targets)
            parts = [self._multipliers(space, rows, targets[rows]) for rows in chunks]
            multipliers = {key: torch.cat([part[key] for part, _ in parts]) for key in space.inputs}
            inexact = set().union(*(names for _, names in parts))
            raw = {key: (space.inputs[key] - space.baselines[key]) * multipliers[key] for key in space.inputs}
            scores = space.to_raw_shapes(raw)
        delta = convergence_delta(scores, gap)
        if inexact:
            warnings.warn(_inexact_message(type(self.model).__name__, inexact, delta, gap), InexactDeepLiftWarning, stacklevel=3)
        if enforce_completeness:
            scores = _rescale_to_gap(scores, gap)
        return (scores, delta) if return_convergence_delta else scores

    def _multipliers(self, space: AttributionSpace, rows: torch.Tensor, targets: torch.Tensor) -> tuple[dict, set[str]]:
        """Gradient at the input rows of the patients ``rows`` (their ``targets``), from a joint ``[x; b]`` pass
        under the chosen multiplier rule, and the ops without an exact rule (``"exact"`` rule only).

        The rules find the ``[x; b]`` rows by their number; where a tensor has another
        dimension of that size (StageNet's ``[time, batch, hidden]`` with as many visits
        as rows), the pass runs again with one more pair of rows, a copy of the first
        sample that is then dropped, up to :data:`EXTRA_PAIRS` times.
        """
        inputs = {key: x[rows].requires_grad_(True) for key, x in space.inputs.items()}
        for extra in range(EXTRA_PAIRS + 1):
            copies = rows[:1].repeat(extra)
            stacked = {key: torch.cat([inputs[key], space.inputs[key][copies], b[rows], b[copies]])
                       for key, b in space.baselines.items()}  # fmt: skip
            unrolled = unrolled_recurrences(self.model) if self.multiplier_rule == "exact" else nullcontext()
            with unrolled, multiplier_rules(self.model, 2 * (len(rows) + extra), self.multiplier_rule) as rules:
                logits = space.forward(stacked, torch.cat([rows, copies, rows, copies]))
            if not rules.ambiguous:
                break
        inexact = set()
        if self.multiplier_rule == "exact":
            inexact = rules.inexact | opaque_modules(self.model)
            inexact |= {f"{name} (which dimension holds the [input; baseline] batch is ambiguous)" for name in rules.ambiguous}
        output = target_logit(logits[: len(rows)], targets).sum()
        grads = torch.autograd.grad(output, list(inputs.values()), allow_unused=True)
        return {key: torch.zeros_like(x) if g is None else g for (key, x), g in zip(inputs.items(), grads)}, inexact


def _inexact_message(model_name: str, inexact: set[str], delta: torch.Tensor, gap: torch.Tensor) -> str:
    """The :class:`InexactDeepLiftWarning`: the ops without an exact rule, and the patients whose delta shows it.

    A patient counts as inexact when ``|δ| > ROUNDING × max(|f(x) - f(b)|, GAP_FLOOR)``.

    Example:
        >>> _inexact_message("Net", {"max"}, torch.tensor([0.5, 0.0]), torch.tensor([2.0, 1.0])).split(": ")[1]
        'patients (batch rows) [0] of 2 have |delta| above rounding, up to 0.5 logits (25% of |f(x) - f(b)|)'
    """
    relative = delta.abs() / gap.abs().clamp_min(GAP_FLOOR)
    rows = (relative > ROUNDING).nonzero().squeeze(1).tolist()
    start = f"DeepLift has no exact rule for {sorted(inexact)} in {model_name}; they used their plain gradient: "
    if not rows:
        return start + "every patient's |delta| is within rounding nonetheless (errors of opposite sign may cancel)"
    shown = ", ".join(map(str, rows[:MAX_NAMED])) + (", ..." if len(rows) > MAX_NAMED else "")
    return start + (f"patients (batch rows) [{shown}] of {len(delta)} have |delta| above rounding, up to "
                    f"{delta.abs().max():.3g} logits ({relative.max():.0%} of |f(x) - f(b)|)")


def _rescale_to_gap(scores: dict[str, torch.Tensor], gap: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scale each sample's attributions to sum to ``gap``; warn where that flips signs or blows up.

    One factor ``k = gap / Σ attributions`` per sample: ``k < 0`` turns every
    contribution of that sample around, and a sum near zero makes ``k`` huge.
    Samples whose attributions sum to ~0 are left as they are.
    """
    total = sample_totals(scores)
    usable = total.abs() > 1e-12
    factor = torch.where(usable, gap / torch.where(usable, total, torch.ones_like(total)), torch.ones_like(total))
    flipped, inflated = int((factor < 0).sum()), int((factor.abs() > 10).sum())
    if flipped or inflated or not usable.all():
        warnings.warn(
            f"enforce_completeness: {flipped} sample(s) had every attribution's sign flipped, {inflated} were "
            f"scaled by more than 10x and {int((~usable).sum())} summed to ~0 and were left unscaled; "
            "the raw attributions (enforce_completeness=False) and their convergence delta are more honest",
            RuntimeWarning,
            stacklevel=3,
        )
    return {key: score * factor.view((-1,) + (1,) * (score.dim() - 1)) for key, score in scores.items()}
