"""What works on which PyHealth model: every method on every structured-EHR model PyHealth 2.1 exports.

Each model is built untrained and tiny on the binary flat-sequence cohort (``flat_dataset``).
For each (model, method) either the method's defining property holds or the method refuses with a
``TypeError``/``ValueError`` that names the model. The outcomes, one word per cell, are the table in
``README.md``; ``test_readme_table_is_the_measured_one`` fails (and prints the table to paste) when
they differ.

Properties, beyond "padding scores exactly 0" and "a patient alone scores as its row of the batch"
(checked for every method that runs):

- rollout: scores >= 0 and each key's scores sum to 1 per patient (flat features).
- chefer: scores >= 0.
- integrated_gradients: Gauss-Legendre with few and more steps; |delta| <= 1e-3 |f(x) - f(b)|, or
  |delta| shrinks with the steps and is below 5 % of it.
- deeplift: |delta| <= 1e-4 |f(x) - f(b)| ("exact"), unless it warns ``InexactDeepLiftWarning``
  ("warned": the delta it returns is the honest error).
- occlusion: runs (and the two properties above).

Models left out (cannot be built on a binary flat-sequence cohort):
"""

import random
import re
import warnings
from pathlib import Path

import numpy
import pytest
import torch

from ehrexplain import InexactDeepLiftWarning
from ehrexplain.methods import make_interpreter, method_spec

from conftest import _batch, single_sample

README = Path(__file__).resolve().parents[1] / "README.md"

METHODS = ("rollout", "chefer", "integrated_gradients", "deeplift", "occlusion")
COLUMNS = ("own forward", "rollout", "chefer", "IG", "DeepLIFT", "occlusion")

#: PyHealth 2.1 model classes, each with tiny constructor options (untrained: the properties do not need training).
MODELS = {
    "LogisticRegression": dict(embedding_dim=8),
    "MLP": dict(embedding_dim=8, hidden_dim=8),
    "RNN": dict(embedding_dim=8, hidden_dim=8),
    "MultimodalRNN": dict(embedding_dim=8, hidden_dim=8),
    "CNN": dict(embedding_dim=8, hidden_dim=8),
    "TCN": dict(embedding_dim=8),
    "RETAIN": dict(embedding_dim=8),
    "MultimodalRETAIN": dict(embedding_dim=8),
    "AdaCare": dict(embedding_dim=8, hidden_dim=8),
    "MultimodalAdaCare": dict(embedding_dim=8, hidden_dim=8),
    "ConCare": dict(embedding_dim=8, hidden_dim=8),
    "GRASP": dict(embedding_dim=8, hidden_dim=8, cluster_num=2),
    "Deepr": dict(embedding_dim=8, hidden_dim=8),
    "Agent": dict(embedding_dim=8, hidden_dim=8),
    "GCN": dict(embedding_dim=8),
    "GAT": dict(embedding_dim=8),
    "StageNet": dict(embedding_dim=8, chunk_size=8, levels=2),
    "StageAttentionNet": dict(embedding_dim=8, chunk_size=8, levels=2),
    "EHRMamba": dict(embedding_dim=8, num_layers=1),
    "JambaEHR": dict(embedding_dim=8),
    "Transformer": dict(embedding_dim=8, heads=1, num_layers=1),
}

#: Exported model classes left out, and why.
SKIPPED = {
    "EHRMambaCEHR": "reads CEHR concept/type/time-id features and needs a concept vocabulary size",
    "SafeDrug, MICRON, GAMENet, MoleRec": "drug recommendation: multilabel drugs from conditions, procedures "
    "and a drug history, with molecule graphs or DDI matrices",
    "XGBoostModel, GradientBoostedTreeModel, CaliForest": "tree ensembles fitted on a whole loader "
    "(bag-of-codes columns); IG and DeepLIFT refuse them by name (tests/test_padding.py)",
    "BIOT, ContraWR, SparcNet, TFMTokenizer": "biosignal (EEG/ECG) tensors",
    "TorchvisionModel, Graph_TorchvisionModel, MedFuse": "images (MedFuse: EHR time series with images)",
    "TransformersModel, TransformerDeID, SdohClassifier, MedLink": "text, de-identification or record "
    "linkage with Hugging Face weights",
    "GraphCare": "needs a knowledge graph per patient",
    "VAE, GAN, HALO, GPT2, PromptEHR, MedGAN, CorGAN, Synthea": "generative models: no label to explain",
}
__doc__ += "".join(f"\n- {names}: {why}." for names, why in SKIPPED.items()) + "\n"

LEGEND = (
    "Untrained models on a binary flat-sequence cohort. *own forward*: the model's own prediction for a patient is "
    "`per-sample` (the same alone, without padding), depends on the `padding` width (then \"alone\" keeps the "
    "batch's padding), `mixes` patients of a batch or is `random` in eval mode (no method can then be per-sample or "
    "complete: its cells only say it runs, padding scoring 0). `exact`: DeepLIFT's scores sum to f(x) − f(b) "
    "(|δ| ≤ 1e-4·|f(x) − f(b)|); `✓`: the method's property holds (rollout ≥ 0 and sums to 1 per feature, "
    "Chefer ≥ 0, IG's δ shrinks with the steps, occlusion runs); `warned`: DeepLIFT has no exact rule for some op, "
    "says so (`InexactDeepLiftWarning`) and returns the honest δ; `refused`: a `TypeError` or `ValueError` naming the model and why; "
    "`✗`: a known bug (`KNOWN_BUGS` in the test). In `✓`, `exact` and `warned` cells padding also scores exactly 0 "
    "and a patient alone scores as its row of the batch."
)

IG_STEPS = (4, 16)
N_PATIENTS = 4


class Cell:
    """One (model, method) outcome: the table's word and the properties that failed (empty when all hold)."""

    def __init__(self):
        self.word, self.failures = None, []

    def check(self, condition, message):
        if not condition:
            self.failures.append(message)


def _seed(seed):
    """Seed every generator a PyHealth model may draw from (GRASP: ``random``; Agent, GRASP: torch)."""
    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def _relative(delta, gap):
    return (delta.abs() / (gap.abs() + 1e-6)).max().item()


def _totals(scores):
    return sum(score.reshape(score.shape[0], -1).sum(-1) for score in scores.values())


def _call(name, model, data, **options):
    """``(scores, delta or None, warnings caught)`` of ``name`` on ``data``."""
    interpreter_options, call_options = {}, {}
    if name == "integrated_gradients":
        interpreter_options = dict(steps=options.pop("steps"), alpha_rule="gauss_legendre")
    if method_spec(name).has_delta:
        call_options["return_convergence_delta"] = True
    _seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = make_interpreter(name, model, **interpreter_options).attribute(**data, **call_options)
    scores, delta = result if isinstance(result, tuple) else (result, None)
    return scores, delta, [w for w in caught if issubclass(w.category, InexactDeepLiftWarning)]


def _measure(model_name, model, name, batch, keys, alone_index, own, alone) -> Cell:
    cell = Cell()
    reason = method_spec(name).supports(model)
    try:
        scores, delta, inexact = _call(name, model, batch, steps=IG_STEPS[-1])
    except (TypeError, ValueError) as refusal:
        cell.word = "refused"
        cell.check(model_name in str(refusal), f"the refusal does not name {model_name}: {refusal}")
        cell.check(reason is not None, f"supports() said it could, then it refused: {refusal}")
        return cell
    except Exception as error:  # noqa: BLE001  (anything else is a bug the table must show)
        cell.word = "error"
        cell.check(False, f"{type(error).__name__} instead of a result or a TypeError/ValueError: {error}")
        return cell
    cell.check(reason is None, f"supports() gave a reason ({reason}) but it ran")
    padding = {key: batch[key] == 0 for key in keys}
    cell.check(any(mask.any() for mask in padding.values()), "the batch has no padding to check")
    for key in keys:
        cell.check(scores[key].shape == batch[key].shape, f"{key}: shape {tuple(scores[key].shape)}")
        cell.check(torch.isfinite(scores[key]).all(), f"{key}: non-finite scores")
        cell.check(bool((scores[key][padding[key]] == 0).all()), f"{key}: padding scores not exactly 0")
    if own in ("random", "mixes"):  # the model's own prediction is not a function of the patient alone
        cell.word = own
        return cell
    if alone is not None:  # the patient alone, padded as the model's own forward allows
        alone_scores, _, _ = _call(name, model, alone, steps=IG_STEPS[-1])
        for key in keys:
            row = scores[key][alone_index, : alone_scores[key].shape[1]]
            cell.check(torch.allclose(alone_scores[key][0], row, rtol=1e-5, atol=1e-5),
                       f"{key}: patient {alone_index} alone scores differ from its row of the batch "
                       f"(max {(alone_scores[key][0] - row).abs().max().item():.2e})")  # fmt: skip
    if name in ("rollout", "chefer"):
        cell.word = "✓"
        for key in keys:
            cell.check(bool((scores[key] >= 0).all()), f"{key}: negative {name} scores")
            if name == "rollout":
                sums = scores[key].sum(-1)
                cell.check(torch.allclose(sums, torch.ones_like(sums), atol=1e-5), f"{key}: rollout sums {sums.tolist()}")
    elif name == "integrated_gradients":
        cell.word = "✓"
        few_scores, few_delta, _ = _call(name, model, batch, steps=IG_STEPS[0])
        gap = _totals(scores) - delta
        more, less = _relative(delta, gap), _relative(few_delta, gap)
        cell.check(more <= 1e-3 or more < less,
                   f"|δ|/|f(x) − f(b)| is {less:.2e} with {IG_STEPS[0]} steps, {more:.2e} with {IG_STEPS[-1]}")  # fmt: skip
    elif name == "deeplift":
        gap = _totals(scores) - delta
        cell.word = "warned" if inexact else "exact"
        cell.check(torch.isfinite(delta).all(), "non-finite delta")
        if not inexact:
            relative = _relative(delta, gap)
            cell.check(relative <= 1e-4, f"no warning, but |δ|/|f(x) − f(b)| = {relative:.2e}")
    else:
        cell.word = "✓"
    return cell


@pytest.fixture(scope="module")
def coverage(flat_dataset):
    """``{(model, method): Cell}``, measured once for the module."""
    import pyhealth.models

    batch = _batch(flat_dataset, N_PATIENTS)
    keys = list(flat_dataset.input_schema)
    lengths = (batch[keys[0]] != 0).sum(-1)
    alone_index = int(lengths.argmin())  # the patient with the most padding
    cells = {}
    for model_name, options in MODELS.items():
        _seed(0)
        model = getattr(pyhealth.models, model_name)(dataset=flat_dataset, **options).eval()
        own, alone = _own_forward(model, batch, keys, alone_index)
        cells[model_name, "own"] = Cell()
        cells[model_name, "own"].word = own
        for name in METHODS:
            cells[model_name, name] = _measure(model_name, model, name, batch, keys, alone_index, own, alone)
    return cells


def _own_forward(model, batch, keys, i):
    """How the model's own prediction for patient ``i`` depends on its batch, and the input to compare with.

    ``("per-sample", i alone without trailing padding)``; ``("padding", i alone padded as in the batch)``
    when the model's own logit changes with the padding width; ``("random", None)`` when two forward
    passes in eval mode differ (no method's result can be checked then); ``("mixes", None)`` when it
    changes with the other patients (the methods cannot be per-sample then).
    """
    with torch.no_grad():
        _seed(1)
        other = model(**batch)["logit"][i]
        _seed(0)
        logit = model(**batch)["logit"][i]
        if not torch.equal(other, logit):
            return "random", None
        trimmed = single_sample(batch, i, keys)
        if torch.allclose(model(**trimmed)["logit"][0], logit, rtol=1e-5, atol=1e-5):
            return "per-sample", trimmed
        padded = {key: value[i : i + 1] for key, value in batch.items()}
        if torch.allclose(model(**padded)["logit"][0], logit, rtol=1e-5, atol=1e-5):
            return "padding", padded
    return "mixes", None


def measured_table(coverage) -> str:
    def word(cell):
        return "✗" if cell.failures else cell.word

    lines = ["| model | " + " | ".join(COLUMNS) + " |", "| --- |" + " --- |" * len(COLUMNS)]
    for model_name in MODELS:
        lines.append(f"| `{model_name}` | " + " | ".join(word(coverage[model_name, name]) for name in ("own",) + METHODS) + " |")
    return "\n".join(lines)


def readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^\| model \| own forward \|.*?(?=\n(?!\|))", text, flags=re.M | re.S)
    return match.group(0).strip() if match else ""


#: (model, method) -> why the cell is known to be wrong; a strict xfail, so a fix shows up as XPASS.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_name", MODELS)
def test_property_or_named_refusal(coverage, model_name, method, request):
    if (model_name, method) in KNOWN_BUGS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_BUGS[model_name, method], strict=True))
    cell = coverage[model_name, method]
    assert not cell.failures, f"{model_name} × {method} ({cell.word}):\n" + "\n".join(cell.failures)


def test_readme_table_is_the_measured_one(coverage):
    table = measured_table(coverage)
    assert readme_table() == table, f"README.md's coverage table is stale; paste this one:\n\n{table}\n\n{LEGEND}"
    assert LEGEND in README.read_text(encoding="utf-8"), f"README.md's coverage legend should read:\n\n{LEGEND}"
