"""The fine-tune recipe (``compress --distill W --distill-on --finetune-schedule``) and the
global allocation (``--allocation global``): library, compress API and CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeprune.cli import main
from edgeprune.compress import CompressOptions, compress
from edgeprune.data import load_dataset
from edgeprune.errors import EdgepruneError
from edgeprune.finetune import distillation_loss
from edgeprune.prune import baseline_scores, prune_network
from edgeprune.prune.api import normalised_scores
from edgeprune.torch_network import MaskedMLP
from edgeprune.train import train_network
from tests.factories import make_network

ACTS = ["relu", "relu", "relu", "sigmoid"]
DIMS = [12, 8, 4, 8, 12]


def _pruned(seed=0, eta=0.6):
    net = make_network(ACTS, DIMS, latent=2, seed=seed)
    return net, prune_network(net, baseline_scores("magnitude", net), sparsity=eta).network


def _x(n=200):
    return np.random.default_rng(2).uniform(size=(n, DIMS[0])).astype(np.float32)


def test_distillation_loss_is_the_documented_weighted_sum():
    teacher, student = _pruned()
    x = torch.from_numpy(_x())
    idx = torch.arange(0, 50)
    model = MaskedMLP(student)
    with torch.no_grad():
        t_outs = MaskedMLP(teacher).activations(x)
    for on, layers in (("all", range(4)), ("output", [3])):
        forward, loss = distillation_loss(teacher, x, 0.3, on)
        with torch.no_grad():
            outs = forward(model, x[idx])
        assert len(outs) == 4
        c = [float(t.double().square().mean()) for t in t_outs]
        recon = float(torch.mean((outs[-1] - x[idx]) ** 2)) / float(x.square().mean())
        match = np.mean([float(torch.mean((outs[k] - t_outs[k][idx]) ** 2)) / c[k]
                         for k in layers])
        np.testing.assert_allclose(float(loss(outs, idx)), 0.7 * recon + 0.3 * match,
                                   rtol=1e-4)
    # the teacher matches itself: with W = 1 its own loss is 0
    forward, loss = distillation_loss(teacher, x, 1.0, "all")
    with torch.no_grad():
        assert float(loss(forward(MaskedMLP(teacher), x[idx]), idx)) < 1e-10


def test_distill_zero_is_the_plain_fine_tune_and_distill_pulls_towards_the_teacher():
    teacher, student = _pruned()
    x = _x()
    kw = {"epochs": 3, "quiet": True, "seed": 1}
    plain, _ = train_network(student, x, **kw)
    zero, _ = train_network(student, x, teacher=teacher, distill=0.0, **kw)
    for a, b in zip(plain.layers, zero.layers, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
    kd, hist = train_network(student, x, teacher=teacher, distill=1.0, **kw)
    assert "train_loss" in hist[0]
    for a, b in zip(kd.layers, student.layers, strict=True):
        assert not np.any(a.weight[~b.mask])  # masked links stay zero
    gap = [float(np.mean((n.forward(x) - teacher.forward(x)) ** 2)) for n in (plain, kd)]
    assert gap[1] < gap[0]  # W = 1 fits the teacher's output better than the plain loss
    with pytest.raises(EdgepruneError, match="teacher"):
        train_network(student, x, distill=0.5, **kw)
    with pytest.raises(EdgepruneError, match="--distill"):
        train_network(student, x, teacher=teacher, distill=1.5, **kw)


def test_default_rate_depends_on_the_kind():
    from edgeprune.finetune import finetune_lr

    net = make_network(ACTS, DIMS, latent=2)
    assert finetune_lr(net, None) == 3e-3 and finetune_lr(net, 0.01) == 0.01
    net.kind = "classifier"
    assert finetune_lr(net, None) == 1e-3


def test_cosine_schedule_decays_the_rate_to_zero():
    from edgeprune.finetune import cosine_scheduler

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-3)
    sched = cosine_scheduler(opt, 10)
    rates = []
    for _ in range(10):
        opt.step()
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    assert rates[0] < 1e-3 and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    _, student = _pruned()
    a, _ = train_network(student, _x(), epochs=2, quiet=True)
    b, _ = train_network(student, _x(), epochs=2, quiet=True, schedule="cosine")
    assert not np.array_equal(a.layers[0].weight, b.layers[0].weight)


def test_global_allocation_keeps_the_top_normalised_scores():
    net = make_network(ACTS, DIMS, latent=2, seed=4)
    scores = baseline_scores("magnitude", net)
    scores[1] = scores[1] * 1000.0  # a layer on another scale: normalising removes it
    norm = normalised_scores(net, scores)
    for s, n in zip(scores, norm, strict=True):
        np.testing.assert_allclose(n, s / s.mean())
    res = prune_network(net, scores, sparsity=0.7, allocation="global")
    same = prune_network(net, baseline_scores("magnitude", net), sparsity=0.7,
                         allocation="global")
    for a, b in zip(res.network.layers, same.network.layers, strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)
    assert abs(res.sparsity - 0.7) < 0.05 and res.importance_level is None
    # the kept links are the highest normalised scores (before the cascade removes dead ends)
    kept = np.concatenate([n[layer.mask] for n, layer in zip(norm, res.network.layers)])
    dropped = np.concatenate([n[~layer.mask] for n, layer in zip(norm, res.network.layers)])
    assert np.median(kept) > np.median(dropped)
    with pytest.raises(EdgepruneError, match="--allocation global"):
        prune_network(net, scores, importance_level=0.8, allocation="global")
    with pytest.raises(EdgepruneError, match="--allocation"):
        prune_network(net, scores, sparsity=0.7, allocation="sideways")


def test_compress_api_and_cli_record_the_recipe(tmp_path, npy_data):
    from edgeprune.checkpoint import save_checkpoint

    net = make_network(ACTS, DIMS, latent=2)
    ds = load_dataset(npy_data)
    kw = {"sparsity": 0.7, "method": "magnitude", "export": "npz", "quiet": True,
          "finetune_epochs": 2}
    res = compress(net, ds, tmp_path / "a", CompressOptions(
        distill=0.5, distill_on="output", finetune_schedule="cosine", allocation="global", **kw))
    assert res.report.finetune_recipe == {"distill": 0.5, "distill_on": "output",
                                          "schedule": "cosine", "lr": 3e-3}
    assert res.report.allocation == "global" and "train_loss" in res.report.finetune_history[0]
    assert "distill 0.5" in (tmp_path / "a" / "report.md").read_text()
    plain = compress(net, ds, tmp_path / "p", CompressOptions(**kw))
    assert plain.report.finetune_recipe == {"lr": 3e-3}  # an autoencoder's default rate
    paper = compress(net, ds, tmp_path / "q", CompressOptions(finetune_lr=1e-3, **kw))
    assert paper.report.finetune_recipe == {"lr": 1e-3}
    assert not np.array_equal(paper.network.layers[0].weight, plain.network.layers[0].weight)
    assert "finetune_recipe" not in compress(net, ds, tmp_path / "n", CompressOptions(
        **{**kw, "finetune_epochs": 0})).report.to_dict()
    model = tmp_path / "model.pt"
    save_checkpoint(net, model)
    r = CliRunner().invoke(main, ["compress", str(model), "--data", npy_data, "--sparsity",
                                  "0.7", "--method", "magnitude", "--finetune-epochs", "2",
                                  "--distill", "0.5", "--finetune-schedule", "cosine",
                                  "--finetune-lr", "0.003",
                                  "--export", "npz", "-q", "-o", str(tmp_path / "cli"),
                                  "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["finetune_recipe"] == {"distill": 0.5, "distill_on": "all", "schedule": "cosine",
                                      "lr": 0.003}
    # with --steps every step's fine-tune distils from the network before pruning
    steps = compress(net, ds, tmp_path / "g", CompressOptions(
        **{**kw, "finetune_epochs": 4}, steps=2, distill=0.5))
    assert len(steps.report.steps) == 2


def test_bad_recipe_options_are_one_line_errors(tmp_path, npy_data):
    with pytest.raises(EdgepruneError, match="--finetune-epochs"):
        CompressOptions(sparsity=0.5, distill=0.5).validate()
    with pytest.raises(EdgepruneError, match="--allocation global"):
        CompressOptions(importance_level=0.8, allocation="global").validate()
    with pytest.raises(EdgepruneError, match="--finetune-lr"):
        CompressOptions(sparsity=0.5, finetune_epochs=1, finetune_lr=0.0).validate()
    with pytest.raises(EdgepruneError, match="--distill-on"):
        CompressOptions(sparsity=0.5, finetune_epochs=1, distill=0.5,
                        distill_on="middle").validate()
    model = tmp_path / "m.pt"
    from edgeprune.checkpoint import save_checkpoint

    save_checkpoint(make_network(ACTS, DIMS, latent=2), model)
    r = CliRunner().invoke(main, ["compress", str(model), "--data", npy_data, "--sparsity",
                                  "0.5", "--distill", "0.5", "-o", str(tmp_path / "o")])
    assert r.exit_code != 0 and "--finetune-epochs" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()
