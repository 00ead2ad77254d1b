"""The method registry: declarations that validation, builders and views read (no dispatch on names)."""

import numpy as np
import pandas as pd
import pytest
import torch

from ehrexplain.methods import (
    METHODS, SPECS, AttentionRollout, DeepLift, Interpreter, IntegratedGradients, make_interpreter, method_spec,
    register_method, unregister_method,
)
from ehrexplain.core.validation import Option
from ehrexplain.viz.method_choices import METHOD_LABELS, method_support


@pytest.fixture
def toy_method():
    """A toy method registered for one test: scores every code 1, supports only models with a `conditions` key."""

    @register_method(
        "toy", label="Toy ones", signed=False, class_specific=False, uses_baseline=False, has_delta=False,
        needs_gradients=False, needs_attention=False,
        supports=lambda model: None if "conditions" in model.feature_keys else "needs a 'conditions' feature",
        options=(Option("scale", float, 1.0, "init", bounds=(0, 10)), Option("offset", int, 0, bounds=(0, 5))),
    )
    class Toy(Interpreter):
        def __init__(self, model, scale: float = 1.0):
            super().__init__(model)
            self.scale = scale

        def attribute(self, target_class_idx=None, offset: int = 0, **data):
            return {key: (data[key] != 0).float() * self.scale + offset for key in self.model.feature_keys}

    yield Toy
    unregister_method("toy")


def test_every_registered_method_declares_what_it_is():
    assert list(METHODS) == ["rollout", "chefer", "integrated_gradients", "deeplift", "occlusion"]
    for name, spec in SPECS.items():
        assert METHODS[name] is spec.cls and spec.cls.spec is spec and spec.name == name
        assert spec.cls.signed_scores is spec.signed and METHOD_LABELS[name] == spec.label
    assert (SPECS["rollout"].signed, SPECS["rollout"].class_specific) == (False, False)
    assert SPECS["integrated_gradients"].has_delta and not SPECS["occlusion"].has_delta
    assert SPECS["chefer"].needs_gradients and SPECS["chefer"].needs_attention and not SPECS["occlusion"].needs_gradients


def test_a_registered_method_reaches_builders_labels_and_support(toy_method, transformer, flat_batch, flat_mlp):
    assert METHODS["toy"] is toy_method and METHOD_LABELS["toy"] == "Toy ones"
    toy = make_interpreter("toy", transformer, scale=np.float32(2.0), offset=np.int64(1))
    assert toy.scale == 2.0 and type(toy.scale) is float and toy.call_defaults == {"offset": 1}
    scores = toy.attribute(**flat_batch)
    assert scores["conditions"].max() == 3.0  # scale 2 from the constructor, offset 1 bound at build
    assert toy.attribute(**flat_batch, offset=0)["conditions"].max() == 2.0  # a call's own option wins

    class NoConditions:  # a stand-in model without the feature the toy needs
        feature_keys = ["procedures"]

    with pytest.raises(TypeError, match="supports none of.*needs a 'conditions' feature"):
        method_support(NoConditions(), ["toy"])
    supported, reasons = method_support(flat_mlp, ["rollout", "toy"])
    assert supported == ["toy"] and reasons["rollout"].startswith("needs attention maps, but MLP")


def test_option_schema_is_checked_by_name_before_any_comparison(toy_method, transformer, flat_batch):
    with pytest.raises(TypeError, match=r"AttentionRollout: discard_ratio must be a real number in \[0, 1\), got '0.5' \(str\)"):
        AttentionRollout(transformer, discard_ratio="0.5")
    with pytest.raises(ValueError, match=r"unknown head_fusion 'median'; head_fusion must be one of \('mean', 'max', 'min'\)"):
        AttentionRollout(transformer, head_fusion="median")
    with pytest.raises(TypeError, match="DeepLift: use_embeddings must be True or False, got 'yes'"):
        DeepLift(transformer, use_embeddings="yes")
    with pytest.raises(ValueError, match=r"Toy: scale must be a real number in \[0, 10\], got 11"):
        toy_method(transformer, scale=11)
    with pytest.raises(TypeError, match=r"Toy: offset must be an integer in \[0, 5\], got 1.5 \(float\)"):
        toy_method(transformer).attribute(**flat_batch, offset=1.5)
    with pytest.raises(TypeError, match="IntegratedGradients has no option 'step'; did you mean 'steps'"):
        make_interpreter("integrated_gradients", transformer, step=8)
    with pytest.raises(ValueError, match="unknown method 'lime'"):
        method_spec("lime")


def test_numpy_integers_are_accepted_wherever_ints_are(transformer, flat_batch):
    ig = IntegratedGradients(transformer, steps=np.int64(8))
    assert ig.steps == 8 and type(ig.steps) is int
    reference = IntegratedGradients(transformer, steps=8).attribute(**flat_batch, internal_batch_size=16)
    numpy_args = ig.attribute(**flat_batch, internal_batch_size=np.int32(16))
    torch.testing.assert_close(numpy_args["conditions"], reference["conditions"])
    rollout = AttentionRollout(transformer, discard_ratio=np.float64(0.25))
    assert type(rollout.discard_ratio) is float


def test_split_sends_each_option_where_the_schema_says():
    spec = method_spec("integrated_gradients")
    assert spec.split({"steps": np.int64(8), "internal_batch_size": 128, "baseline": None}) == (
        {"steps": 8}, {"internal_batch_size": 128, "baseline": None})
    assert method_spec("rollout").split({"discard_ratio": 0.5}) == ({"discard_ratio": 0.5}, {})


def test_compare_takes_call_options_from_the_schema(transformer, flat_dataset):
    """Issue 21: an attribute-only option in method_options used to reach the constructor and raise."""
    from pyhealth.datasets import get_dataloader

    from ehrexplain.evaluation import compare

    loader = get_dataloader(flat_dataset, batch_size=8, shuffle=False)
    table = compare(transformer, loader, ["integrated_gradients", "occlusion"], max_batches=1, progress=False,
                    method_options={"integrated_gradients": {"steps": 8, "internal_batch_size": 16}})
    assert list(table.index) == ["integrated_gradients", "occlusion"]
    assert np.isfinite(table.drop(columns="randomization_passed").to_numpy(dtype=float)).all()


def test_compare_hands_each_method_its_call_options(transformer, flat_dataset, monkeypatch):
    """IG's steps and passes and DeepLIFT's patients per pass reach every attribute call (the sanity check's too);
    DeepLIFT's chunks leave its metrics as they were; a bad value is refused by name before anything runs."""
    from pyhealth.datasets import get_dataloader

    import ehrexplain.methods.deeplift as deeplift
    import ehrexplain.methods.integrated_gradients as ig
    from ehrexplain.evaluation import compare

    seen = {"pass_pairs": [], "pass_rows": [], "alpha_grid": []}
    for module, name in ((deeplift, "pass_pairs"), (ig, "pass_rows"), (ig, "alpha_grid")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda first, *rest, _f=original, _n=name: seen[_n].append(first) or _f(first, *rest))
    loader = get_dataloader(flat_dataset, batch_size=8, shuffle=False)
    run = lambda options: compare(transformer, loader, ["integrated_gradients", "deeplift"], max_batches=1,  # noqa: E731
                                  progress=False, method_options=options)
    table = run({"integrated_gradients": {"steps": 8, "internal_batch_size": 128}, "deeplift": {"internal_batch_size": 3}})
    # one call on the batch, two in the sanity check (the trained model, its random copy)
    assert seen["pass_pairs"] == [3] * 3 and seen["pass_rows"] == [128] * 3
    assert set(seen["alpha_grid"]) == {8}  # every IG built and called
    default = run({})
    assert seen["pass_pairs"][3:] == ["auto"] * 3
    metrics = ["comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc", "randomization_spearman"]
    np.testing.assert_allclose(table.loc["deeplift", metrics].to_numpy(float), default.loc["deeplift", metrics].to_numpy(float),
                               atol=1e-6)
    with pytest.raises(ValueError, match="DeepLift: internal_batch_size must be a positive integer, got 0"):
        run({"deeplift": {"internal_batch_size": 0}})


def test_occlusion_appears_in_the_explorer_and_explain_cohort(demo_transformer, demo_cohort, transformer,
                                                             flat_dataset, tmp_path):
    from ehrexplain.cohort import explain_cohort, read_attributions
    from ehrexplain.viz.widgets import ExplanationExplorer

    explorer = ExplanationExplorer(demo_transformer, demo_cohort)
    assert "occlusion" in [value for _, value in explorer.method.options]
    explorer.method.value = "occlusion"
    assert explorer.explanation.method == "occlusion" and explorer.explanation.signed
    assert explorer.baseline.layout.display is None and explorer.steps.layout.display == "none"
    out = explain_cohort(transformer, flat_dataset, "occlusion", out=tmp_path / "occ", batch_size=32, progress=False)
    rows = read_attributions(out)
    assert isinstance(rows, pd.DataFrame) and rows["sample"].nunique() == len(flat_dataset)
    assert "delta" not in rows.columns or rows["delta"].isna().all()


def test_overview_has_one_row_per_method_with_declared_properties_and_live_cost(flat_mlp, flat_batch):
    from ehrexplain.methods import overview

    table = overview(flat_mlp, flat_batch, integrated_gradients={"steps": 8})
    assert list(table.index) == list(SPECS) and table.index.name == "method"
    for name, spec in SPECS.items():
        assert table.loc[name, "signed"] == spec.signed and table.loc[name, "label"] == spec.label
        assert table.loc[name, "completeness"] == ("delta returned" if spec.has_delta else "none")
    # an MLP has no attention: rollout and Chefer say why and cost nothing; the others were timed on this batch
    assert table.loc["rollout", "supported"].startswith("needs attention maps, but MLP")
    assert np.isnan(table.loc[["rollout", "chefer"], "ms_per_patient"]).all()
    assert (table.loc[["integrated_gradients", "deeplift", "occlusion"], "ms_per_patient"] > 0).all()
    assert table.loc["deeplift", "max_abs_delta"] < 1e-4  # exact rules on an MLP
    assert np.isfinite(table.loc["integrated_gradients", "max_abs_delta"])
    assert np.isnan(table.loc["occlusion", "max_abs_delta"])
    assert table.loc["chefer", "needs"] == "attention maps and gradients"
