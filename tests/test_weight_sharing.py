"""Weight sharing with fine-tuned codebooks (edgeprune.weight_sharing) and ``compress --quantize
sharedN --codebook-epochs``, through the library and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeprune.checkpoint import load_network
from edgeprune.cli import main
from edgeprune.data import load_dataset
from edgeprune.network import ModelError
from edgeprune.prune import baseline_scores, compact_network, prune_network
from edgeprune.runtime import load
from edgeprune.torch_network import torch_forward
from edgeprune.train import build_autoencoder, train_network
from edgeprune.weight_sharing import _SharedLayer, share_and_finetune


@pytest.fixture(scope="module")
def digits_pruned():
    ds = load_dataset("digits", seed=0)
    net = build_autoencoder(64, [16, 6], "relu", "sigmoid", seed=0)
    net, _ = train_network(net, ds.x_train, ds.x_val, epochs=5, seed=0, quiet=True)
    pruned = prune_network(net, baseline_scores("magnitude", net), sparsity=0.7).network
    return pruned, ds


def test_centroid_gradient_is_the_sum_of_its_members_gradients(digits_pruned) -> None:
    pruned, _ = digits_pruned
    layer = _SharedLayer(pruned.layers[0], 8)
    x = torch.rand(5, pruned.layers[0].in_dim)
    weight = layer.weight()
    weight.retain_grad()
    layer.act(torch.nn.functional.linear(x, weight, layer.bias)).sum().backward()
    member_grads = weight.grad.reshape(-1)[layer.positions]
    expected = torch.zeros_like(layer.codebook).index_add_(0, layer.codes, member_grads)
    torch.testing.assert_close(layer.codebook.grad, expected)


@pytest.mark.parametrize("coding, size", [("shared4", 16), ("shared5", 32), ("shared6", 64)])
def test_shared_network_keeps_masks_and_at_most_k_values(digits_pruned, coding, size) -> None:
    pruned, ds = digits_pruned
    shared, history = share_and_finetune(pruned, ds, coding, epochs=2, lr=1e-3)
    assert len(history) == 2 and all(np.isfinite(h["train_loss"]) for h in history)
    for before, after in zip(pruned.layers, shared.layers, strict=True):
        assert np.array_equal(before.mask, after.mask)
        values = after.masked_weight[after.masked_weight != 0]
        assert 1 <= np.unique(values).size <= size
        assert not after.masked_weight[~before.mask].any()


def test_codebook_finetuning_lowers_the_loss_of_plain_sharing(digits_pruned) -> None:
    pruned, ds = digits_pruned
    plain, _ = share_and_finetune(pruned, ds, "shared4", epochs=0)
    tuned, _ = share_and_finetune(pruned, ds, "shared4", epochs=4, lr=1e-3)

    def mse(net):
        return float(np.mean((net.forward(ds.x_train) - ds.x_train) ** 2))

    assert mse(tuned) < mse(plain)


def test_bundle_of_a_shared_network_computes_it_exactly(digits_pruned, tmp_path) -> None:
    from edgeprune.exporters.csr import save_bundle

    pruned, ds = digits_pruned
    shared, _ = share_and_finetune(pruned, ds, "shared5", epochs=1, lr=1e-3)
    path = save_bundle(compact_network(shared), tmp_path / "s.npz", quantize="shared5")
    x = ds.x_test[:32]
    assert np.abs(load(path)(x) - torch_forward(shared, x)).max() < 1e-5


def test_refuses_bad_options(digits_pruned) -> None:
    pruned, ds = digits_pruned
    with pytest.raises(ModelError, match="needs one of shared4, shared5, shared6"):
        share_and_finetune(pruned, ds, "int8")
    with pytest.raises(ModelError, match="--codebook-epochs must be >= 0"):
        share_and_finetune(pruned, ds, "shared5", epochs=-1)


def test_compress_codebook_epochs_cli(tmp_path, small_model, npy_data) -> None:
    runner = CliRunner()
    out = tmp_path / "s"
    res = runner.invoke(main, ["compress", str(small_model), "--data", npy_data, "--method",
                               "magnitude", "--sparsity", "0.5", "--export", "npz", "-q",
                               "--quantize", "shared4", "--codebook-epochs", "2",
                               "--npz-compression", "deflate", "-o", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    stage = report["quantization"]
    assert stage["codebook_epochs"] == 2 and len(stage["codebook_history"]) == 2
    # compared with the float32 network before sharing, not with itself
    assert report["artifacts"]["npz"]["max_abs_diff_vs_fp32"] > 1e-4
    pruned = load_network(out / "pruned.pt")  # the shared network, as model.npz stores it
    for layer in pruned.layers:
        assert np.unique(layer.masked_weight[layer.masked_weight != 0]).size <= 16
    x = np.random.default_rng(1).random((16, 12)).astype(np.float32)
    assert np.abs(load(out / "model.npz")(x) - torch_forward(pruned, x)).max() < 1e-5
    info = json.loads(runner.invoke(main, ["info", str(out / "model.npz"), "--json"]).output)
    assert {m["compression"] for m in info["zip_members"]} == {"deflate"}
    text = runner.invoke(main, ["info", str(out / "model.npz")]).output
    assert "bundle version 3, packed (meta.npy deflate" in text and "weights=shared4" in text
    bad = runner.invoke(main, ["compress", str(small_model), "--data", npy_data, "--method",
                               "magnitude", "--sparsity", "0.5", "--codebook-epochs", "2",
                               "-o", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "add --quantize shared4, shared5 or shared6" in bad.output
    assert not (tmp_path / "bad").exists()


def test_size_budget_holds_after_codebook_finetuning(tmp_path, small_model, npy_data) -> None:
    """--target-size is measured again on the tuned codebooks: the published file fits."""
    runner = CliRunner()
    base = ["compress", str(small_model), "--data", npy_data, "--method", "magnitude",
            "--export", "npz", "-q", "--quantize", "shared4", "--finetune-epochs", "1",
            "--codebook-epochs", "2"]
    full = runner.invoke(main, [*base, "--sparsity", "0", "-o", str(tmp_path / "full")])
    assert full.exit_code == 0, full.output
    budget = (tmp_path / "full" / "model.npz").stat().st_size - 120
    res = runner.invoke(main, [*base, "--target-size", str(budget), "-o", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    size = (tmp_path / "t" / "model.npz").stat().st_size
    target = json.loads((tmp_path / "t" / "report.json").read_text())["scoring"]["target"]
    assert size <= budget and target["value"] == size
