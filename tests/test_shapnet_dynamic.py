"""Dynamic pruning of compiled ShapNets in the runtime (Cor. 4): what is skipped, that threshold
0 changes nothing, that a threshold stays within its bound, and the Fig. 5 curve."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.exporters.shapnet import save_shapnet_bundle
from edgeprune.runtime.shapnet import load_shapnet
from edgeprune.shapnet.compile import compile_shapnet, compile_spec
from edgeprune.shapnet.dynamic import as_runtime_model, dynamic_pruning_curve, module_deviations
from tests.shapnet_cases import at_reference, random_spec, torch_models


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A padded three-transform ShapNet, and inputs where a third of the rows put two of the
    first transform's modules at their reference and a third are sparse."""
    spec = random_spec(features=8, inputs=7, seed=5)
    path = save_shapnet_bundle(compile_spec(spec),
                               tmp_path_factory.mktemp("shapnet") / "model.npz")
    rng = np.random.default_rng(6)
    x = rng.normal(size=(30, 7)).astype(np.float32)
    x = at_reference(spec, x, slice(0, 10), 2)
    x[20:][np.abs(x[20:]) < 0.8] = 0.0
    return spec, load_shapnet(path), x


def test_threshold_zero_changes_nothing_and_skips_only_exact_reference(case):
    spec, model, x = case
    plain = model.run(x)
    pruned = model.run(x, skip_threshold=0.0)
    assert pruned.skipped.shape == (30, model.n_modules)
    assert pruned.skipped[:10, :2].all()  # the modules put at their reference
    assert 0 < pruned.skipped_fraction < 1
    assert np.array_equal(pruned.prediction, plain.prediction)  # bit for bit (batch kernel)
    assert np.array_equal(pruned.explanation, plain.explanation)
    for b in range(5):  # batch 1: the very kernels of the chain
        one = model.run(x[b], skip_threshold=0.0)
        assert np.array_equal(one.prediction, model.run(x[b:b + 1]).prediction[0])
        dev = model.deviations(x[b])
        assert np.array_equal(one.skipped, dev == 0)  # skipped iff inputs equal the reference


@pytest.mark.parametrize("threshold", [0.05, 0.3, 1.0, 5.0])
def test_threshold_change_within_the_bound(case, threshold):
    spec, model, x = case
    plain = model.run(x)
    pruned = model.run(x, skip_threshold=threshold)
    bound_pred, bound_expl = model.skip_bound(threshold)
    assert np.all(np.abs(pruned.prediction - plain.prediction) <= bound_pred + 1e-5)
    assert np.all(np.abs(pruned.explanation - plain.explanation) <= bound_expl + 1e-5)
    # skipping is monotone in the threshold and never skips a module beyond it
    assert pruned.skipped.sum() >= model.run(x, skip_threshold=threshold / 2).skipped.sum()


def test_skipped_modules_contribute_exactly_zero(case):
    """With everything skipped the explanation is 0 and the prediction the bias."""
    spec, model, x = case
    out = model.run(x[:3], skip_threshold=1e6)
    assert out.skipped.all()
    assert np.array_equal(out.explanation, np.zeros_like(out.explanation))
    assert np.array_equal(out.prediction, np.broadcast_to(spec.output_bias, (3, spec.outputs)))


def test_runtime_skips_what_the_pytorch_emulation_skips():
    import torch

    for name, model in torch_models(seed=1):
        if not name.startswith("deep"):
            continue
        rng = np.random.default_rng(7)
        x = rng.normal(size=(12, model.in_dim)).astype(np.float32)
        x[:6, :2] = model.reference[:2].numpy()
        runtime = as_runtime_model(model)
        for t in (0.0, 0.2):
            skipped: list = []
            with torch.no_grad():
                z = model.representations(torch.from_numpy(x), skip_threshold=t,
                                          skipped=skipped)[-1][:, :model.in_dim]
            out = runtime.run(x, skip_threshold=t)
            assert np.array_equal(torch.cat(skipped, 1).numpy(), out.skipped)
            assert np.abs(out.explanation - z.numpy()).max() <= 1e-5
            assert np.abs(out.prediction - (z.sum(1) + model.bias).detach().numpy()).max() <= 1e-5


def test_bad_thresholds_are_user_errors(case):
    _, model, x = case
    for bad in (-0.1, float("nan"), float("inf"), "x", True):
        with pytest.raises(EdgepruneError, match="skip_threshold"):
            model.run(x, skip_threshold=bad)


def test_dynamic_pruning_curve(case):
    spec, model, x = case
    labels = np.random.default_rng(0).integers(0, 2, len(x))
    rows = dynamic_pruning_curve(model, x, labels, thresholds=[0.5, 0.0, 2.0])
    assert [r["threshold"] for r in rows] == [0.0, 0.5, 2.0]
    first = rows[0]
    assert first["max_prediction_change"] == 0.0 and first["prediction_agreement"] == 1.0
    assert first["accuracy"] == np.mean(model.run(x).prediction.argmax(1) == labels)
    fractions = [r["skipped_fraction"] for r in rows]
    assert fractions == sorted(fractions) and fractions[-1] > fractions[0] > 0
    assert all(0 <= r["macs_skipped_fraction"] < 1 for r in rows)
    assert all(r["max_prediction_change"] <= r["bound"] + 1e-5 for r in rows)
    assert len(rows[1]["skipped_by_transform"]) == 3
    auto = dynamic_pruning_curve(model, x, x[:, :2] * 2.0)  # float targets: MSE, auto thresholds
    assert "mse" in auto[0] and len(auto) > 3
    dev = module_deviations(model, x)
    assert dev.shape == (30, model.n_modules) and (dev[:10, :2] == 0).all()


def test_curve_accepts_torch_models_and_bundles(tmp_path):
    name, model = torch_models()[1]
    x = np.random.default_rng(1).normal(size=(8, model.in_dim)).astype(np.float32)
    path = save_shapnet_bundle(compile_shapnet(model), tmp_path / "m.npz")
    a = dynamic_pruning_curve(model, x, thresholds=[0.1])
    b = dynamic_pruning_curve(str(path), x, thresholds=[0.1])
    assert a == b
    with pytest.raises(EdgepruneError, match="the ShapNet reads"):
        dynamic_pruning_curve(model, x[:, :3])
