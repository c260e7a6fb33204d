"""Pruning a VAE end to end: the link game of its heads, `compress` from the CLI, the bundle
runtime (encode / encode_logvar / decode / sample), the encoder and decoder graphs of ONNX and
TFLite, each against PyTorch to 1e-5; and VAE bundles that lie."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeprune import runtime
from edgeprune.checkpoint import load_network, save_checkpoint
from edgeprune.cli import main
from edgeprune.data import load_dataset
from edgeprune.exporters.csr import bundle_arrays
from edgeprune.prune import cascade_dead_units, compact_network
from edgeprune.runtime.bundle import BundleError, validate_bundle
from edgeprune.vae import train_vae
from edgeprune.vae_network import torch_decode, torch_vae_outputs, vae_to_network
from edgeprune.vae_pruning import logvar_scores

TOL = 1e-5


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory, digits):
    vae, _ = train_vae(digits.x_train, latent=4, hidden=[24], epochs=3, seed=0,
                       likelihood="bernoulli")
    path = tmp_path_factory.mktemp("vae") / "vae.pt"
    save_checkpoint(vae_to_network(vae, meta={"vae": {"beta": 1.0}}), path)
    return path


def _compress(vae_file, outdir, *extra):
    res = CliRunner().invoke(main, ["compress", str(vae_file), "--data", "digits",
                                    "--sparsity", "0.75", "--finetune-epochs", "1", "-q",
                                    "-o", str(outdir), *extra])
    assert res.exit_code == 0, res.output
    return res


def _max(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)))


def test_compress_vae_cli_writes_every_part_at_parity(tmp_path, vae_file, digits):
    res = _compress(vae_file, tmp_path / "out")
    out = tmp_path / "out"
    assert "log-variance head" in res.output and "encoder.onnx" in res.output
    report = json.loads((out / "report.json").read_text())
    head = report["vae"]["logvar_head"]
    assert report["vae"]["likelihood"] == "bernoulli" and report["vae"]["logvar_in_artifacts"]
    assert 0 < head["links_kept"] < head["links"] and head["scoring"]["estimator"] == "linear"
    assert "test_neg_elbo" in report["metrics"]["after"]
    assert report["finetune_history"][0]["kl"] > 0  # fine-tuned by the ELBO

    pruned = load_network(out / "pruned.pt")
    assert pruned.kind == "vae" and pruned.logvar.n_active == head["links_kept"]
    for layer in pruned.layers + [pruned.logvar]:  # masked links stayed exactly zero
        assert np.all(layer.weight[~layer.mask] == 0)
    trunk_dead = ~pruned.layers[pruned.latent - 2].mask.any(axis=1)
    assert not pruned.logvar.mask[:, trunk_dead].any()  # the head keeps no unit alive

    x = digits.x_test[:200]
    ref = torch_vae_outputs(pruned, x)
    model = runtime.load(out / "model.npz")
    assert model.meta["version"] == 3 and model.is_vae and model.has_logvar
    assert _max(model(x), ref["recon"]) <= TOL
    assert _max(model.encode(x), ref["mu"]) <= TOL
    assert _max(model.encode_logvar(x), ref["logvar"]) <= TOL
    mu, logvar = model.posterior(x[0])
    assert _max(logvar, ref["logvar"][0]) <= TOL
    z = np.random.default_rng(1).standard_normal((9, 4)).astype(np.float32)
    assert _max(model.decode(z), torch_decode(pruned, z)) <= TOL
    assert _max(model.sample(z), torch_decode(pruned, z)) <= TOL
    drawn = model.sample(9, seed=1)
    assert drawn.shape == (9, 64) and np.array_equal(drawn, model.sample(9, seed=1))

    from edgeprune.exporters.onnx import run_onnx
    from edgeprune.exporters.tflite import run_tflite

    enc_ref = np.hstack([ref["mu"], ref["logvar"]])
    for fmt, run in (("onnx", run_onnx), ("tflite", run_tflite)):
        assert _max(run(out / f"model.{fmt}", x), ref["recon"]) <= TOL
        assert _max(run(out / f"encoder.{fmt}", x), enc_ref) <= TOL
        assert _max(run(out / f"decoder.{fmt}", z), torch_decode(pruned, z)) <= TOL
        parts = report["artifacts"][fmt]["parts"]
        assert parts["encoder"]["max_abs_diff_vs_pytorch"] <= TOL
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"encoder.onnx", "decoder.tflite"} <= set(json.dumps(manifest).split('"'))

    info = CliRunner().invoke(main, ["info", str(out / "model.npz")])
    assert "vae: 4 latent units" in info.output and "bernoulli likelihood" in info.output


def test_compress_vae_drop_logvar_and_run_modes(tmp_path, vae_file, digits):
    _compress(vae_file, tmp_path / "out", "--drop-logvar", "--method", "magnitude",
              "--export", "onnx")
    out = tmp_path / "out"
    model = runtime.load(out / "model.npz")
    assert model.is_vae and not model.has_logvar and model.meta["version"] == 3
    with pytest.raises(ValueError, match="--drop-logvar"):
        model.encode_logvar(digits.x_test[:2])
    pruned = load_network(out / "pruned.pt")
    assert pruned.logvar is not None  # the checkpoint keeps the head
    from edgeprune.exporters.onnx import run_onnx

    x = digits.x_test[:50]
    assert _max(run_onnx(out / "encoder.onnx", x), torch_vae_outputs(pruned, x)["mu"]) <= TOL
    np.save(tmp_path / "x.npy", x)
    res = CliRunner().invoke(main, ["run", str(out / "model.npz"), str(tmp_path / "x.npy"),
                                    "--logvar", "-o", str(tmp_path / "lv.npy")])
    assert res.exit_code == 1 and "--drop-logvar" in res.output
    assert res.output.count("\n") == 1


def test_run_logvar_cli(tmp_path, vae_file, digits):
    _compress(vae_file, tmp_path / "out", "--export", "npz")
    x = digits.x_test[:20]
    np.save(tmp_path / "x.npy", x)
    res = CliRunner().invoke(main, ["run", str(tmp_path / "out" / "model.npz"),
                                    str(tmp_path / "x.npy"), "--logvar",
                                    "-o", str(tmp_path / "lv.npy")])
    assert res.exit_code == 0, res.output
    pruned = load_network(tmp_path / "out" / "pruned.pt")
    assert _max(np.load(tmp_path / "lv.npy"), torch_vae_outputs(pruned, x)["logvar"]) <= TOL


@pytest.mark.parametrize("extra, match", [
    (["--quantize", "int8"], "--quantize is not built for VAEs"),
    (["--steps", "2"], "--steps N is not built for VAEs"),
    (["--reconstruct"], "--reconstruct is not built for VAEs"),
    (["--granularity", "neuron", "--sparsity", None], "--granularity neuron"),
])
def test_unsupported_vae_options_are_one_line(tmp_path, vae_file, extra, match):
    args = ["compress", str(vae_file), "--data", "digits", "--sparsity", "0.5", "-q",
            "-o", str(tmp_path / "out")]
    if None in extra:  # neuron pruning takes no --sparsity
        args.remove("--sparsity")
        args.remove("0.5")
        extra = [e for e in extra if e is not None and e != "--sparsity"]
        extra += ["--strategy", "random:1"]
    res = CliRunner().invoke(main, args + extra)
    assert res.exit_code == 1 and match in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_likelihood_option_needs_a_vae(tmp_path, small_model, npy_data):
    res = CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data,
                                    "--sparsity", "0.5", "--likelihood", "bernoulli",
                                    "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and "--likelihood applies to VAEs" in res.output


def test_logvar_link_game_is_the_linear_game_on_the_trunk_output(digits):
    vae, _ = train_vae(digits.x_train[:300], latent=3, hidden=[10], epochs=1, seed=2)
    net = vae_to_network(vae)
    x = digits.x_train[:64]
    opts = SimpleNamespace(method="shap-sae", estimator="auto", reference="zero", seed=0,
                           memory_budget=2**30, quiet=True, score_rule="paper", alpha=0.25)
    li, summary = logvar_scores(net, x, opts, 0.25)
    a = net.forward(x, upto=net.latent - 1)  # the trunk's output: the head's inputs
    w = net.logvar.weight.astype(np.float64)
    exact = np.mean(np.abs(w[None, :, :] * a[:, None, :]), axis=0)  # phi_ij = w_ij a_j
    assert summary["estimator"] == "linear"
    np.testing.assert_allclose(li, exact, rtol=1e-5, atol=1e-9)


def test_cascade_folds_dead_trunk_units_into_the_logvar_bias_exactly(digits):
    vae, _ = train_vae(digits.x_train[:200], latent=3, hidden=[10], epochs=1, seed=3)
    net = vae_to_network(vae)
    net.layers[0].mask[[1, 4], :] = False  # two trunk units read nothing: constants act(b)
    x = digits.x_test[:50]
    before = net.encode_logvar(x)
    out = cascade_dead_units(net).network
    assert not out.logvar.mask[:, [1, 4]].any()
    np.testing.assert_allclose(out.encode_logvar(x), before, atol=1e-5)
    compact = compact_network(out)
    assert compact.logvar.weight.shape == (3, 8)


def _vae_bundle(digits):
    vae, _ = train_vae(digits.x_train[:200], latent=3, hidden=[10], epochs=1, seed=4)
    return bundle_arrays(compact_network(vae_to_network(vae)))


def _lie(arrays, **meta_edits):
    meta = json.loads(str(arrays["meta"]))
    for key, value in meta_edits.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    return {**arrays, "meta": np.array(json.dumps(meta))}


@pytest.mark.parametrize("edit, match", [
    (lambda a: {**a, "logvar.data": np.full_like(a["logvar.data"], np.nan)}, "logvar.data"),
    (lambda a: {k: v for k, v in a.items() if k != "logvar.bias"}, "logvar.bias"),
    (lambda a: _lie(a, version=2), "version-3"),
    (lambda a: _lie(a, logvar=None), "logvar"),
    (lambda a: _lie(a, latent_layer=None, latent_dim=None), "meta.logvar"),
    (lambda a: _lie(a, logvar={**json.loads(str(a["meta"]))["logvar"], "shape": [3, 7]}),
     "logvar"),
    (lambda a: _lie(a, logvar={**json.loads(str(a["meta"]))["logvar"], "activation": "gelu"}),
     "meta.logvar.activation"),
])
def test_lying_vae_bundles_are_refused_in_one_line(digits, edit, match):
    arrays = _vae_bundle(digits)
    validate_bundle(arrays)  # the honest one loads
    with pytest.raises(BundleError) as err:
        validate_bundle(edit(arrays))
    assert match in str(err.value) and "\n" not in str(err.value)


def test_vae_bundle_file_round_trip_and_member_checks(tmp_path, digits):
    from edgeprune.exporters.csr import serialize

    arrays = _vae_bundle(digits)
    (tmp_path / "v.npz").write_bytes(serialize(arrays))
    model = runtime.load(tmp_path / "v.npz")
    assert model.has_logvar and model.encode_logvar(np.zeros(64, np.float32)).shape == (3,)
    with pytest.raises(BundleError, match="logvar.extra"):
        validate_bundle({**arrays, "logvar.extra": np.zeros(2)})
    np.savez(tmp_path / "loose.npz", **arrays)  # version 3 is packed: loose members refused
    with pytest.raises(BundleError, match="logvar.data.npy"):
        runtime.load(tmp_path / "loose.npz")


def test_torch_reference_matches_the_vae_module(digits):
    vae, _ = train_vae(digits.x_train[:200], latent=2, hidden=[8], epochs=1, seed=5)
    x = digits.x_test[:10]
    ref = torch_vae_outputs(vae_to_network(vae), x)
    with torch.no_grad():
        mu, logvar = vae.encode(torch.from_numpy(x))
        assert _max(ref["mu"], mu.numpy()) <= 1e-6
        assert _max(ref["logvar"], logvar.numpy()) <= 1e-6
        assert _max(ref["recon"], vae.decode(mu).numpy()) <= 1e-6


def test_compress_a_mu_only_vae_fine_tunes_by_mse(tmp_path, digits):
    from edgeprune.compress import CompressOptions, compress

    vae, _ = train_vae(digits.x_train[:400], latent=3, hidden=[12], epochs=2, seed=6)
    net = vae_to_network(vae)
    net.logvar = None  # a user's mu-only VAE
    res = compress(net, digits, tmp_path / "out", CompressOptions(
        sparsity=0.6, finetune_epochs=1, quiet=True, export="onnx"))
    assert res.report.vae["logvar_head"] is None and "train_mse" in res.report.finetune_history[0]
    model = runtime.load(tmp_path / "out" / "model.npz")
    assert model.is_vae and not model.has_logvar
    from edgeprune.exporters.onnx import run_onnx

    x = digits.x_test[:30]
    assert _max(run_onnx(tmp_path / "out" / "encoder.onnx", x),
                torch_vae_outputs(res.network, x)["mu"]) <= TOL
