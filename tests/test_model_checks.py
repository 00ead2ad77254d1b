"""Model and batch checked together: dtypes and devices of every parameter, the model's dtype for inputs and labels,
inference mode."""

import copy

import pytest
import torch

from ehrexplain import AttentionRollout, CheferRelevance, DeepLift, IntegratedGradients
from ehrexplain.methods import SPECS, make_interpreter

#: method name -> (interpreter class, which lab model it explains, constructor options)
METHODS = {
    "rollout": (AttentionRollout, "lab_transformer", {}),
    "chefer": (CheferRelevance, "lab_transformer", {}),
    "ig": (IntegratedGradients, "lab_mlp", {"steps": 8}),
    "deeplift": (DeepLift, "lab_mlp", {}),
}


def explain(method: str, model, batch: dict) -> dict:
    interpreter, _, options = METHODS[method]
    return interpreter(model, **options).attribute(**batch)


@pytest.fixture(params=sorted(METHODS))
def method_and_model(request):
    return request.param, request.getfixturevalue(METHODS[request.param][1])


def assert_same(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].double(), b[key].double(), **({"rtol": 0, "atol": 0} | tolerance))


def test_a_float64_model_explains_float32_inputs(method_and_model, lab_batch):
    method, model = method_and_model
    wide = copy.deepcopy(model).double()
    scores = explain(method, wide, lab_batch)  # float32 labs widened exactly to the model's float64
    assert_same(scores, explain(method, wide, {**lab_batch, "labs": lab_batch["labs"].double()}))
    assert_same(scores, explain(method, model, lab_batch), rtol=1e-3, atol=1e-4)  # float64 of the same weights
    assert lab_batch["labs"].dtype == torch.float32  # the caller's tensor is left as found


@pytest.mark.parametrize("method, options", [("ig", {}), ("ig", {"tolerance": 1e-9}), ("deeplift", {})],
                         ids=["ig-steps", "ig-tolerance", "deeplift"])
def test_a_float64_affine_model_is_explained_complete_to_float64_rounding(method, options, lab_mlp, lab_batch):
    affine = copy.deepcopy(lab_mlp).double()
    for layers in affine.mlp.values():
        layers[1] = torch.nn.Identity()  # no ReLU: IG's quadrature is exact, only rounding is left
    interpreter = METHODS[method][0](affine, **METHODS[method][2])
    scores, delta = interpreter.attribute(**lab_batch, **options, return_convergence_delta=True)
    assert {score.dtype for score in scores.values()} == {torch.float64}
    assert delta.abs().max() < 1e-12  # float32 path weights or points alone leave ~1e-7


def test_float64_labs_into_a_float32_model(method_and_model, lab_batch):
    method, model = method_and_model
    labs = lab_batch["labs"].double()
    assert_same(explain(method, model, {**lab_batch, "labs": labs}), explain(method, model, lab_batch))
    assert labs.dtype == torch.float64


def test_an_int64_binary_label_is_cast_for_the_models_loss(method_and_model, lab_batch):
    method, model = method_and_model
    label = lab_batch["label"].long()
    assert_same(explain(method, model, {**lab_batch, "label": label}), explain(method, model, lab_batch))
    assert label.dtype == torch.int64


@pytest.mark.parametrize("name", list(SPECS))
def test_inputs_the_model_overflows_on_are_named(name, lab_transformer, lab_batch):
    labs = lab_batch["labs"].clone()
    labs[2:4] *= 1e30  # finite, but the model's layer norm overflows float32 on them
    if SPECS[name].needs_attention:
        cause = r"Transformer's attention maps for feature 'labs' hold NaN or infinity for sample\(s\) \[2, 3\]; .*rescale or clip"
    else:
        cause = r"Transformer predicts NaN or infinity for sample\(s\) \[2, 3\].*drop, fill or rescale those samples"
    with pytest.raises(ValueError, match=cause):
        make_interpreter(name, lab_transformer).attribute(**{**lab_batch, "labs": labs})


@pytest.mark.parametrize("method", ["rollout", "ig"])
def test_one_bfloat16_layer_is_named(method, request, lab_batch):
    model = copy.deepcopy(request.getfixturevalue(METHODS[method][1]))
    model.fc.to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"mixes floating dtypes \(torch.float32: parameter '[^']+'; "
                                        r"torch.bfloat16: parameter 'fc.weight'\); make them one with model.float"):
        explain(method, model, lab_batch)


@pytest.mark.parametrize("method", ["chefer", "deeplift"])
def test_one_layer_on_meta_is_named(method, request, lab_batch):
    model = copy.deepcopy(request.getfixturevalue(METHODS[method][1]))
    model.fc.to("meta")
    with pytest.raises(ValueError, match=r"has 2 of \d+ tensors on the meta device \(no values\), e.g. parameter 'fc.weight'"):
        explain(method, model, lab_batch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device (CUDA)")
def test_a_model_on_two_devices_is_named(lab_mlp, lab_batch):
    model = copy.deepcopy(lab_mlp)
    model.fc.to("cuda")
    with pytest.raises(ValueError, match=r"tensors on several devices \(cpu: parameter '[^']+'; cuda:0: parameter 'fc.weight'\)"):
        explain("ig", model, lab_batch)


def test_inside_inference_mode_and_with_an_inference_batch(method_and_model, lab_batch):
    method, model = method_and_model
    expected = explain(method, model, lab_batch)
    with torch.inference_mode():
        inside = explain(method, model, lab_batch)
        made_there = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in lab_batch.items()}
    assert made_there["labs"].is_inference()
    assert_same(inside, expected)
    assert_same(explain(method, model, made_there), expected)
