"""Compiled ShapNets: the chain against the definition, the bundle (version 4) and its
validation, the runtime, ONNX and TFLite against PyTorch (prediction and explanation)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeprune.exporters.shapnet import (
    save_shapnet_bundle,
    shapnet_bundle_arrays,
)
from edgeprune.runtime import BundleError, load
from edgeprune.runtime.bundle import validate_bundle
from edgeprune.runtime.shapnet import ShapNetModel, load_shapnet
from edgeprune.shapnet.compile import compile_shapnet, compile_spec, spec_from_model
from edgeprune.shapnet.spec import SpecError
from tests.shapnet_cases import random_spec, torch_models, torch_outputs

TOL = 1e-5


@pytest.mark.parametrize("kwargs", [
    {},
    {"transforms": ((3, 1, 4, [6, 6], "sigmoid"),), "features": 5, "overlapping": True},
    {"transforms": ((1, 1, 2, [3], "relu"), (2, 2, 3, [4], "leaky_relu")), "features": 6},
    {"features": 8, "inputs": 6},
])
def test_compiled_chain_is_the_shapnet(kwargs):
    """The CSR chain computes the definition (float64 module-by-module Shapley values)."""
    spec = random_spec(**kwargs)
    compiled = compile_spec(spec)
    x = np.random.default_rng(1).normal(size=(9, spec.n_inputs)).astype(np.float32)
    pred, expl = spec.forward(x)
    got_pred, got_expl = compiled.forward(x)
    assert got_expl.shape == expl.shape == (9, spec.n_inputs, spec.outputs)
    assert np.abs(got_pred - pred).max() <= TOL
    assert np.abs(got_expl - expl).max() <= TOL
    # local accuracy of the definition itself: the explanation sums to prediction - bias
    assert np.allclose(expl.sum(axis=1) + spec.output_bias, pred)


@pytest.mark.parametrize("name,model", torch_models(), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_runtime_matches_pytorch(tmp_path, name, model):
    x = np.random.default_rng(2).normal(size=(33, model.in_dim)).astype(np.float32)
    pred, expl = torch_outputs(model, x)
    path = save_shapnet_bundle(compile_shapnet(model), tmp_path / "model.npz")
    runtime = load_shapnet(path)
    for kernel in ("csr", "auto", "dense"):
        got = ShapNetModel(runtime.bundle, kernel=kernel)(x)
        assert np.abs(got[0] - pred).max() <= TOL and np.abs(got[1] - expl).max() <= TOL
    one_pred, one_expl = runtime(x[0])
    assert one_pred.shape == pred[0].shape and one_expl.shape == expl[0].shape
    assert np.abs(one_expl - expl[0]).max() <= TOL
    # the generic runtime runs the same file: its flat output is [prediction, explanation]
    flat = load(path)(x)
    assert np.abs(flat[:, :pred.shape[1]] - pred).max() <= TOL
    meta = runtime.bundle.meta
    assert meta["version"] == 4 and meta["kind"] == "shapnet"
    assert meta["shapnet"]["variant"] == name.split("-")[0]


def test_onnx_and_tflite_match_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    from edgeprune.exporters.shapnet import (
        export_shapnet_onnx,
        export_shapnet_tflite,
        run_shapnet_onnx,
        run_shapnet_tflite,
    )

    for name, model in torch_models(seed=3):
        x = np.random.default_rng(4).normal(size=(17, model.in_dim)).astype(np.float32)
        ref = torch_outputs(model, x)
        compiled = compile_shapnet(model)
        onnx_path = export_shapnet_onnx(compiled, tmp_path / f"{name}.onnx", verify_inputs=x,
                                        verify_reference=ref)
        tfl_path = export_shapnet_tflite(compiled, tmp_path / f"{name}.tflite", verify_inputs=x,
                                         verify_reference=ref)
        for run, path in ((run_shapnet_onnx, onnx_path), (run_shapnet_tflite, tfl_path)):
            for rows in (x, x[:1]):
                got = run(path, rows)
                assert got[1].shape == (len(rows), model.in_dim, model.out_dim)
                assert np.abs(got[0] - ref[0][:len(rows)]).max() <= TOL
                assert np.abs(got[1] - ref[1][:len(rows)]).max() <= TOL


def test_spec_errors_are_one_line():
    spec = random_spec()
    spec.transforms[1].modules[0].layers[0].activation = "softmax"
    with pytest.raises(SpecError, match="transform 2: modules with different inner"):
        compile_spec(spec)
    spec = random_spec()
    spec.transforms[1].in_channels = 5
    with pytest.raises(SpecError, match="takes 5 channels per feature"):
        compile_spec(spec)
    with pytest.raises(SpecError, match="cannot compile a Linear"):
        import torch

        spec_from_model(torch.nn.Linear(2, 2))


# -- the bundle's ShapNet section is checked against the chain --------------------------------
def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    return shapnet_bundle_arrays(compile_spec(random_spec(seed=seed)))


def _meta(arrays) -> dict:
    return json.loads(str(arrays["meta"].item()))


def _with_meta(arrays, meta) -> dict:
    return {**arrays, "meta": np.array(json.dumps(meta))}


def _tamper_active(a):
    a["shapnet.t1.active"] = a["shapnet.t1.active"].copy()
    a["shapnet.t1.active"][0] = 99


def _tamper_reference(a):
    a["shapnet.t2.reference"] = a["shapnet.t2.reference"].copy()
    a["shapnet.t2.reference"][1] = np.nan


def _tamper_copies(a):
    a["layer1.data"] = a["layer1.data"] * np.float32(2)


def _tamper_copy_block(a):
    a["layer2.data"] = a["layer2.data"].copy()
    a["layer2.data"][-1] += np.float32(0.5)  # the last copy of the last module only


def _tamper_difference(a):
    a["layer4.data"] = a["layer4.data"].copy()
    a["layer4.data"][0] = np.float32(-2)


def _tamper_inner_bias(a):
    a["layer2.bias"] = a["layer2.bias"].copy()
    a["layer2.bias"][-1] += np.float32(1)


def _outside_block(a):
    first_row_end = int(a["layer2.indptr"][1])
    a["layer2.indices"] = a["layer2.indices"].copy()
    a["layer2.indices"][first_row_end - 1] += 1  # the next (module, copy) block's first input


def _duplicate_feature(a):
    a["shapnet.t1.active"] = a["shapnet.t1.active"].copy()
    a["shapnet.t1.active"][1] = a["shapnet.t1.active"][0]


@pytest.mark.parametrize("tamper,message", [
    (_tamper_active, "shapnet.t1.active holds feature 99"),
    (_tamper_reference, "shapnet.t2.reference holds a non-finite value"),
    (_tamper_copies, "layer1 is not the masked-copies layer"),
    (_tamper_copy_block, "layer2 has copies of module 3 with different weights"),
    (_tamper_difference, "layer4 is not the difference layer"),
    (_duplicate_feature, "shapnet.t1.active repeats a feature in module 0"),
    (_tamper_inner_bias, "layer2.bias differs between the copies of a module"),
    (_outside_block, "layer2 reads outside its"),
    (lambda a: a.pop("shapnet.t2.reference"), "shapnet.t2.reference is missing"),
])
def test_tampered_arrays_are_refused(tamper, message):
    arrays = _arrays()
    tamper(arrays)
    with pytest.raises(BundleError, match=message):
        validate_bundle(arrays, source="model.npz")


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["shapnet"]["transforms"][0].update(k=9), r"transforms\[1\].k is 9, over"),
    (lambda m: m["shapnet"]["transforms"].pop(), "describe 10 layers, the bundle has 15"),
    (lambda m: m["shapnet"].update(inputs=9), "meta.shapnet.inputs is 9, over"),
    (lambda m: m.update(version=2), r"meta.layers\[1\].weights is missing"),
    (lambda m: m.update(version=1), "meta.shapnet is a version-4 field in a version-1 bundle"),
    (lambda m: m["shapnet"]["transforms"][1].update(in_channels=2), "the transform before it "
                                                                     "gives 3 channels"),
    (lambda m: m["layers"][1].update(activation="identity"), None),
])
def test_tampered_meta_is_refused(edit, message):
    arrays = _arrays()
    meta = _meta(arrays)
    edit(meta)
    if message is None:  # an inner activation may be anything; the chain just runs it
        validate_bundle(_with_meta(arrays, meta))
        return
    with pytest.raises(BundleError, match=message):
        validate_bundle(_with_meta(arrays, meta), source="model.npz")


def test_unknown_shapnet_member_refused_from_the_zip(tmp_path):
    arrays = _arrays()
    arrays["shapnet.t7.active"] = np.zeros(2, np.int64)
    path = tmp_path / "model.npz"
    np.savez(path, **arrays)
    with pytest.raises(BundleError, match="shapnet.t7.active is not part of a bundle"):
        load_shapnet(path)


def test_plain_bundle_is_not_a_shapnet(tmp_path):
    from edgeprune.exporters.csr import save_bundle
    from tests.factories import compact_mlp, random_compact_layer

    rng = np.random.default_rng(0)
    path = tmp_path / "plain.npz"
    save_bundle(compact_mlp([random_compact_layer(rng, 3, 4, "relu")], 4, 3, kind="classifier"),
                path)
    assert load(path)(np.zeros(4, np.float32)).shape == (3,)  # version 1 still loads
    with pytest.raises(Exception, match="is not a ShapNet bundle"):
        load_shapnet(path)


# -- SHAP-SAE link pruning of the inner MLPs -------------------------------------------------
def _brute_force_shapley(f, x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact Shapley values of ``f`` (batch -> (batch, out)) at one sample ``x`` vs ``ref``."""
    from itertools import combinations
    from math import factorial

    d = x.shape[0]
    phi = 0.0
    rows, weights = [], []
    for i in range(d):
        for size in range(d):
            for s in combinations([j for j in range(d) if j != i], size):
                w = factorial(size) * factorial(d - size - 1) / factorial(d)
                base = ref.copy()
                base[list(s)] = x[list(s)]
                with_i = base.copy()
                with_i[i] = x[i]
                rows += [with_i, base]
                weights.append((i, w))
    values = f(np.array(rows, np.float32)).astype(np.float64)
    phi = np.zeros((d, values.shape[1]))
    for n, (i, w) in enumerate(weights):
        phi[i] += w * (values[2 * n] - values[2 * n + 1])
    return phi


def test_inner_link_pruning_keeps_exact_shapley_values():
    from edgeprune.shapnet.link_pruning import prune_inner_links

    name, model = torch_models(seed=4)[0]  # the Shallow ShapNet: exact Shapley values
    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, model.in_dim)).astype(np.float32)
    pruned, report = prune_inner_links(model, x, sparsity=0.5)
    assert 0.3 < report["inner_sparsity"] < 0.8
    assert report["transforms"][0]["links_kept"] < report["transforms"][0]["links"]
    before, after = compile_shapnet(model), compile_shapnet(pruned)
    assert after.nnz < before.nnz
    ref = model.reference.numpy()
    pred, expl = torch_outputs(pruned, x[:2])
    for b in range(2):
        exact = _brute_force_shapley(lambda v: torch_outputs(pruned, v)[0], x[b], ref)
        assert np.abs(expl[b] - exact).max() <= 1e-5
    # the compiled pruned model runs in the runtime like the pruned PyTorch model
    runtime = ShapNetModel(validate_bundle(shapnet_bundle_arrays(after)))
    got = runtime(x)
    ref_pred, ref_expl = torch_outputs(pruned, x)
    assert np.abs(got[0] - ref_pred).max() <= TOL and np.abs(got[1] - ref_expl).max() <= TOL
    with pytest.raises(Exception, match="exactly one of"):
        prune_inner_links(model, x)


def test_export_shapnet_writes_every_format_checked_against_pytorch(tmp_path):
    from edgeprune.shapnet.deploy import export_shapnet

    name, model = torch_models(seed=6)[1]
    x = np.random.default_rng(8).normal(size=(40, model.in_dim)).astype(np.float32)
    result = export_shapnet(model, tmp_path / "out", x, formats="npz")
    art = result["written"]["npz"]
    assert art["max_abs_diff_prediction"] <= TOL and art["max_abs_diff_explanation"] <= TOL
    assert (tmp_path / "out" / "model.npz").is_file()
    assert (tmp_path / "out" / "manifest.json").is_file()
    assert result["compiled"]["modules"] == sum(len(t) for t in model.transforms)
    with pytest.raises(Exception, match="the ShapNet reads"):
        export_shapnet(model, tmp_path / "bad", x[:, :2], formats="npz")
    assert not (tmp_path / "bad").exists()
