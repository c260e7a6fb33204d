"""SHAP loadings (`explain --loadings`): the model-level explainers against closed forms and
brute force, the library API and the CLI (files, options, one-line errors)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_cli import _fails, _ok

from edgeprune.checkpoint import save_checkpoint
from edgeprune.cli import main
from edgeprune.encoder_shap import (
    efficiency_gap,
    encoder_shap,
    exact_shap,
    permutation_shap,
    relative_l1,
)
from edgeprune.errors import EdgepruneError
from edgeprune.explain_plots import PNG_SIZE
from edgeprune.loadings import encoder_module, shap_loadings, write_loadings
from edgeprune.vae import VAE
from edgeprune.vae_network import vae_to_network
from tests.factories import make_network

pytest.importorskip("matplotlib")
EXPLAINERS = ["exact", "permutation", "deep", "shap-permutation"]


@pytest.fixture
def runner():
    return CliRunner()


def _linear(n_in=6, n_out=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_in, n_out))


@pytest.mark.parametrize("explainer", EXPLAINERS)
def test_linear_encoder_loadings_are_w_times_x_minus_r_per_sample(explainer):
    """z = W x + c, one reference r: phi_jk(x) = W_kj (x_j - r_j) on every sample."""
    enc = _linear()
    rng = np.random.default_rng(1)
    x, r = rng.normal(size=(7, 6)), rng.normal(size=6)
    phi = encoder_shap(enc, x, r, explainer=explainer, permutations=4)
    w = enc[0].weight.detach().double().numpy()                  # (latent, n)
    expected = (x - r)[:, :, None] * w.T[None, :, :]              # (N, n, latent)
    np.testing.assert_allclose(phi, expected, rtol=0, atol=1e-12)
    lo = shap_loadings(enc, x, r, explainer=explainer, permutations=4)
    np.testing.assert_allclose(lo.mean_abs, np.abs(expected).mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(lo.signed, expected.mean(axis=0), atol=1e-12)


def test_linear_background_gives_w_times_x_minus_background_mean():
    enc = _linear(5, 2, seed=3)
    rng = np.random.default_rng(2)
    x, bg = rng.normal(size=(4, 5)), rng.normal(size=(9, 5))
    w = enc[0].weight.detach().double().numpy()
    expected = (x - bg.mean(axis=0))[:, :, None] * w.T[None]
    for name in ("exact", "permutation"):
        np.testing.assert_allclose(encoder_shap(enc, x, bg, explainer=name), expected,
                                   atol=1e-12)


def _deep_encoder(n=8, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n, 12), torch.nn.Tanh(), torch.nn.Linear(12, 10),
                               torch.nn.ReLU(), torch.nn.Linear(10, 3))


def test_exact_matches_shaps_exact_explainer_on_a_nonlinear_encoder():
    """Our enumeration and shap.ExactExplainer agree on interventional values (background)."""
    shap = pytest.importorskip("shap")
    enc = _deep_encoder()
    rng = np.random.default_rng(0)
    x, bg = rng.normal(size=(3, 8)), rng.normal(size=(4, 8))
    ours = exact_shap(enc, x, bg)
    f64 = torch.nn.Sequential(*[m for m in enc]).double()

    def f(a):
        with torch.no_grad():
            return f64(torch.as_tensor(a, dtype=torch.float64)).numpy()

    theirs = shap.explainers.Exact(f, shap.maskers.Independent(bg, max_samples=4))(x).values
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    assert efficiency_gap(enc, x, bg, ours) < 1e-12


def test_permutation_is_efficient_seeded_and_converges_to_exact():
    enc = _deep_encoder(seed=2)
    rng = np.random.default_rng(3)
    x, r = rng.normal(size=(6, 8)), np.zeros(8)
    exact = exact_shap(enc, x, r)
    few = permutation_shap(enc, x, r, permutations=4, seed=1)
    many = permutation_shap(enc, x, r, permutations=400, seed=1)
    assert efficiency_gap(enc, x, r, few) < 1e-12 and efficiency_gap(enc, x, r, many) < 1e-12
    assert np.array_equal(few, permutation_shap(enc, x, r, permutations=4, seed=1))
    assert relative_l1(many, exact) < 0.5 * relative_l1(few, exact)
    assert relative_l1(many, exact) < 0.03


def test_encoder_of_an_autoencoder_and_a_vae_is_the_chain_up_to_the_latent():
    net = make_network(["relu", "tanh", "relu", "sigmoid"], [10, 6, 3, 6, 10], latent=2)
    x = np.random.default_rng(0).random((5, 10), dtype=np.float32)
    with torch.no_grad():
        z = encoder_module(net)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(z, net.encode(x), atol=1e-6)
    torch.manual_seed(0)
    vae = VAE(10, 3, [8]).eval()
    vnet = vae_to_network(vae)
    with torch.no_grad():
        mu = vae.encode(torch.from_numpy(x))[0].numpy()
        np.testing.assert_allclose(encoder_module(vnet)(torch.from_numpy(x)).numpy(), mu,
                                   atol=1e-6)
    with pytest.raises(EdgepruneError, match="no latent layer"):
        encoder_module(make_network(["relu", "identity"], [4, 3, 2], latent=None))


def test_exact_refuses_too_many_features():
    with pytest.raises(EdgepruneError, match="at most 16 features"):
        exact_shap(_linear(17, 2), np.zeros((1, 17)), np.zeros(17))


def test_write_loadings_files_and_consistency(tmp_path):
    enc = _deep_encoder()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 8))
    lo = shap_loadings(enc, x, np.zeros(8), explainer="exact")
    files = write_loadings(lo, tmp_path / "out", features=[2, 8], top=3)
    out = tmp_path / "out"
    assert files == ["loadings_mean_abs.png", "loadings_signed.png", "shap_hist_x2.png",
                     "shap_hist_x8.png", "loadings.csv", "loadings.json", "loadings.md"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, "manifest.json"])
    import matplotlib.image

    for name in files[:4]:
        assert matplotlib.image.imread(out / name).shape[:2] == PNG_SIZE[::-1]
    body = json.loads((out / "loadings.json").read_text())
    assert np.allclose(body["mean_abs"], np.abs(lo.phi).mean(axis=0))
    assert np.allclose(body["signed"], lo.phi.mean(axis=0))
    assert [len(t) for t in body["top_features"]] == [3, 3, 3]
    rows = list(csv.DictReader((out / "loadings.csv").open()))
    assert len(rows) == 8 and float(rows[1]["mean_abs_z2"]) == pytest.approx(lo.mean_abs[1, 1])
    with pytest.raises(EdgepruneError, match="--features 9"):
        write_loadings(lo, tmp_path / "out2", features=[9])
    assert not (tmp_path / "out2").exists()


def _vae_file(tmp_path, data):
    torch.manual_seed(0)
    net = vae_to_network(VAE(12, 3, [8]).eval(), meta={"trained_on": data})
    path = tmp_path / "vae.pt"
    save_checkpoint(net, path)
    return path


def test_cli_loadings_of_a_vae_and_an_autoencoder(runner, tmp_path, npy_data, small_model):
    vae = _vae_file(tmp_path, npy_data)
    out = tmp_path / "lo"
    text = _ok(runner.invoke(main, ["explain", str(vae), "--loadings", "-o", str(out),
                                    "--samples", "16", "--features", "3,12", "-q"]))
    assert "z1: strongest features" in text and "loadings.csv" in text
    body = json.loads((out / "loadings.json").read_text())
    assert body["explainer"] == "exact" and body["n_latent"] == 3 and body["n_samples"] == 16
    assert [f["index"] for f in body["histogram_features"]] == [2, 11]
    assert (out / "shap_hist_x3.png").is_file()
    # a re-run over its own output is allowed; the permutation explainer with a background
    _ok(runner.invoke(main, ["explain", str(small_model), "--data", npy_data, "--loadings",
                             "--explainer", "permutation", "--background", "8", "--samples",
                             "8", "--rotation", "varimax", "-o", str(out), "-q"]))
    body = json.loads((out / "loadings.json").read_text())
    assert body["explainer"] == "permutation" and "8 training rows" in body["source"]["background"]
    r = np.asarray(body["source"]["rotation"])
    assert r.shape == (3, 3) and np.allclose(r @ r.T, np.eye(3))
    assert "rotated by varimax" in (out / "loadings.md").read_text()
    assert not (out / "shap_hist_x3.png").exists()


def test_cli_loadings_errors_are_one_line(runner, tmp_path, npy_data, small_model):
    vae = _vae_file(tmp_path, npy_data)
    out = str(tmp_path / "o")
    base = ["explain", str(vae), "--loadings", "-o", out, "-q"]
    _fails(runner.invoke(main, [*base, "--features", "0"]), "--features 0")
    _fails(runner.invoke(main, [*base, "--features", "13"]), "--features 13")
    _fails(runner.invoke(main, [*base, "--features", "a,b"]), "--features")
    _fails(runner.invoke(main, [*base, "--scores", "s.npz"]), "--scores does not apply")
    _fails(runner.invoke(main, [*base, "-m", "0.5"]), "--importance-level does not apply")
    _fails(runner.invoke(main, ["explain", str(small_model), "--data", npy_data, "-o", out,
                                "--explainer", "deep"]), "--explainer does not apply")
    _fails(runner.invoke(main, ["explain", str(small_model), "--data", npy_data, "-o", out,
                                "--rotation", "varimax"]), "--rotation does not apply")
    mlp = make_network(["relu", "identity"], [12, 4, 2], latent=None)
    save_checkpoint(mlp, tmp_path / "mlp.pt")
    _fails(runner.invoke(main, ["explain", str(tmp_path / "mlp.pt"), "--data", npy_data,
                                "--loadings", "-o", out]), "no latent layer")
    assert not (tmp_path / "o").exists()


class _Wrapped(torch.nn.Module):
    """An encoder that is not an nn.Sequential: the permutation explainer's generic path."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def test_permutation_generic_path_equals_the_running_sum_path():
    enc = _deep_encoder(seed=4)
    rng = np.random.default_rng(4)
    x, bg = rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    fast = permutation_shap(enc, x, bg, permutations=6, seed=2)
    generic = permutation_shap(_Wrapped(enc), x, bg, permutations=6, seed=2)
    np.testing.assert_allclose(generic, fast, atol=1e-12)
    assert efficiency_gap(enc, x, bg, generic) < 1e-12


def test_varimax_rotation_recovers_a_sparse_pattern_and_rotates_phi_exactly():
    from edgeprune.loadings import Loadings, varimax_rotation

    rng = np.random.default_rng(0)
    sparse = np.zeros((60, 3))
    for k in range(3):
        sparse[20 * k:20 * (k + 1), k] = rng.uniform(0.5, 1.5, 20)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    r = varimax_rotation(sparse @ q)
    back = np.abs(sparse @ q @ r)
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-10)
    # every feature loads on one rotated unit only, and each block on its own unit
    assert np.all(np.sort(back, axis=1)[:, :2] < 1e-6)
    assert len({int(np.argmax(back[20 * k])) for k in range(3)}) == 3
    lo = Loadings(rng.normal(size=(5, 60, 3)), [f"x{j}" for j in range(60)], "exact")
    rot = lo.rotated(q)
    np.testing.assert_allclose(rot.phi, np.einsum("snk,km->snm", lo.phi, q))
    assert rot.info["rotation"] == q.tolist()


def test_cli_loadings_of_a_compress_output_read_the_pruned_encoder(runner, tmp_path, npy_data,
                                                                    small_model):
    out = tmp_path / "c"
    _ok(runner.invoke(main, ["compress", str(small_model), "--data", npy_data, "--sparsity",
                             "0.6", "--method", "magnitude", "--export", "npz", "-q", "-o",
                             str(out)]))
    lo_dir = tmp_path / "lo"
    _ok(runner.invoke(main, ["explain", str(out), "--loadings", "--samples", "8", "-q", "-o",
                             str(lo_dir)]))
    body = json.loads((lo_dir / "loadings.json").read_text())
    assert body["source"]["model"].endswith("pruned.pt")
    from edgeprune.checkpoint import load_network

    pruned = load_network(out / "pruned.pt")
    never = ~pruned.layers[0].mask.any(axis=0)     # inputs the pruned encoder never reads
    assert never.any()
    assert np.all(np.asarray(body["mean_abs"])[never] == 0)
