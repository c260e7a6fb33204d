"""``edgeprune explain``: the files it writes, their pixel sizes, the JSON's consistency with the
pruned model, the Python API and one-line errors."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_network
from test_cli import _fails, _ok

from edgeprune.checkpoint import load_network, save_checkpoint
from edgeprune.cli import main
from edgeprune.data import load_dataset
from edgeprune.errors import EdgepruneError
from edgeprune.explain import ExplainOptions, explain, explain_network, write_explanation
from edgeprune.explain_plots import PNG_SIZE

pytest.importorskip("matplotlib")


@pytest.fixture
def runner():
    return CliRunner()


def png_size(path):
    """(width, height) from the PNG signature and IHDR chunk; also decodable by matplotlib."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    assert matplotlib.image.imread(path).shape[:2] == (height, width)
    return width, height


def _check_outputs(outdir, n_layers):
    pictures = ["input_importance.png", *(f"li_layer{k}.png" for k in range(1, n_layers + 1)),
                "pruned_inputs.png"]
    for name in pictures:
        assert png_size(outdir / name) == PNG_SIZE == (640, 480), name
    rep = json.loads((outdir / "explain.json").read_text())
    assert rep["files"] == [*pictures, "explain.json", "explain.md"]
    assert sorted(p.name for p in outdir.iterdir()) == sorted([*rep["files"], "manifest.json"])
    assert not [p for p in outdir.parent.iterdir() if p.name.startswith(f".{outdir.name}.")]
    ui = np.array([e["ui"] for e in rep["inputs"]])
    assert len(ui) == rep["input_dim"] and np.all(ui >= 0)
    assert [e["rank"] for e in sorted(rep["inputs"], key=lambda e: e["rank"])] == \
        list(range(1, len(ui) + 1))
    assert rep["most_important"][0]["ui"] == ui.max()
    assert rep["least_important"][0]["ui"] == ui.min()
    never = [e["index"] for e in rep["never_read"]]
    assert never == [e["index"] for e in rep["inputs"] if not e["read_by_pruned_model"]]
    assert [row["layer"] for row in rep["layers"]] == list(range(1, n_layers + 1))
    md = (outdir / "explain.md").read_text()
    assert rep["most_important"][0]["name"] in md and rep["least_important"][0]["name"] in md
    assert f"never reads ({len(never)} of {rep['input_dim']})" in md
    return rep


def test_help_lists_explain(runner):
    assert "explain" in _ok(runner.invoke(main, ["-h"]))
    assert "--importance-level" in _ok(runner.invoke(main, ["explain", "-h"]))


def test_model_file_matches_compress_at_the_same_level(runner, tmp_path, small_model):
    """A plain model: pruned at m = 0.8 like compress, named by the CSV header, bar charts."""
    x = np.random.default_rng(5).random((300, 12))
    names = [f"f{j}" for j in range(12)]
    csv = tmp_path / "d.csv"
    np.savetxt(csv, x, delimiter=",", header=",".join(names), comments="")
    data = f"csv:{csv}"
    scores = tmp_path / "s.npz"
    _ok(runner.invoke(main, ["score", str(small_model), "--data", data, "--samples", "32", "-q",
                             "-o", str(scores)]))
    result = runner.invoke(main, ["explain", str(small_model), "--data", data,
                                  "--scores", str(scores), "-q", "-o", str(tmp_path / "e")])
    out = _ok(result)
    assert "never read by the pruned model" in out and not result.stderr
    rep = _check_outputs(tmp_path / "e", 4)
    assert rep["image_shape"] is None and [e["name"] for e in rep["inputs"]] == names
    with np.load(scores) as z:
        assert np.allclose([e["ui"] for e in rep["inputs"]], z["li1"].mean(axis=0))
    _ok(runner.invoke(main, ["compress", str(small_model), "--data", data, "-m", "0.8",
                             "--scores", str(scores), "--export", "npz", "-q",
                             "-o", str(tmp_path / "c")]))
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert [e["index"] for e in rep["never_read"]] == report["unused_inputs"]
    assert {0, 5} <= set(report["unused_inputs"])  # the fixture's weak inputs


def test_compress_outdir_uses_its_pruned_masks(runner, tmp_path, small_model, npy_data):
    _ok(runner.invoke(main, ["compress", str(small_model), "--data", npy_data, "-m", "0.7",
                             "--samples", "32", "--export", "npz", "-q",
                             "-o", str(tmp_path / "c")]))
    result = runner.invoke(main, ["explain", str(tmp_path / "c"), "--samples", "32",
                                  "-o", str(tmp_path / "e")])
    _ok(result)
    assert "scoring" in result.stderr  # progress without --quiet, on stderr
    rep = _check_outputs(tmp_path / "e", 4)
    assert rep["source"]["scored_model"] == str(small_model)  # the original, from report.json
    assert rep["source"]["data"] == npy_data  # the data compress recorded
    mask = load_network(tmp_path / "c" / "pruned.pt").layers[0].mask
    never = [e["index"] for e in rep["never_read"]]
    assert never == np.flatnonzero(~mask.any(axis=0)).tolist()
    assert never and not mask[:, never].any()
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert never == report["unused_inputs"]
    assert [row["links_kept"] for row in rep["layers"]] == \
        [row["links_kept"] for row in report["layers"]]


def test_outdir_without_its_original_model_reads_recorded_scores(runner, tmp_path, npy_data):
    model = tmp_path / "gone.pt"
    save_checkpoint(make_network(["relu", "sigmoid"], [12, 4, 12], latent=1), model)
    scores = tmp_path / "s.npz"
    _ok(runner.invoke(main, ["score", str(model), "--data", npy_data, "--samples", "16", "-q",
                             "-o", str(scores)]))
    _ok(runner.invoke(main, ["compress", str(model), "--data", npy_data, "-m", "0.6",
                             "--scores", str(scores), "--export", "npz", "-q",
                             "-o", str(tmp_path / "c")]))
    model.unlink()  # report.json still names it: pruned.pt is the model explained
    _ok(runner.invoke(main, ["explain", str(tmp_path / "c"), "-q", "-o", str(tmp_path / "e")]))
    rep = _check_outputs(tmp_path / "e", 2)
    assert rep["source"]["scored_model"] == str(tmp_path / "c" / "pruned.pt")
    assert str(scores) in rep["source"]["scores"]
    with np.load(scores) as z:
        assert np.allclose([e["ui"] for e in rep["inputs"]], z["li1"].mean(axis=0))
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert [e["index"] for e in rep["never_read"]] == report["unused_inputs"]


def test_image_inputs_are_drawn_as_images(runner, tmp_path):
    """64 inputs from (n, 8, 8) data: 8x8 pictures, pixel names, zero-score columns dropped."""
    net = make_network(["relu", "sigmoid"], [64, 8, 64], latent=1)
    save_checkpoint(net, tmp_path / "m.pt")
    np.save(tmp_path / "img.npy", np.random.default_rng(1).random((200, 8, 8), np.float32))
    li1 = np.random.default_rng(2).random((8, 64))
    dead = [0, 8, 63]
    li1[:, dead] = 0.0
    np.savez(tmp_path / "s.npz", li1=li1, li2=np.random.default_rng(3).random((64, 8)))
    out = _ok(runner.invoke(main, ["explain", str(tmp_path / "m.pt"), "--data",
                                   f"npy:{tmp_path / 'img.npy'}", "--scores",
                                   str(tmp_path / "s.npz"), "-m", "0.9", "--top", "3", "-q",
                                   "-o", str(tmp_path / "e")]))
    rep = _check_outputs(tmp_path / "e", 2)
    assert rep["image_shape"] == [8, 8]
    names = [e["name"] for e in rep["inputs"]]
    assert names[0] == "pixel (1,1)" and names[9] == "pixel (2,2)" and names[63] == "pixel (8,8)"
    assert set(dead) <= {e["index"] for e in rep["never_read"]}
    assert len(rep["most_important"]) == len(rep["least_important"]) == 3
    assert rep["most_important"][0]["index"] == int(np.argmax(li1.mean(axis=0)))
    assert rep["most_important"][0]["name"] in out
    assert "SHAP-SAE at importance level m = 0.9" in rep["source"]["pruned"]


def test_synthetic6_constant_input_has_zero_importance(runner, tmp_path):
    """Paper section 3.1: x1 is constant, so with --reference mean it carries nothing."""
    save_checkpoint(make_network(["tanh", "sigmoid"], [6, 3, 6], latent=1), tmp_path / "m.pt")
    _ok(runner.invoke(main, ["explain", str(tmp_path / "m.pt"), "--data", "synthetic6",
                             "--reference", "mean", "--samples", "32", "-q",
                             "-o", str(tmp_path / "e")]))
    rep = _check_outputs(tmp_path / "e", 2)
    x1 = rep["inputs"][0]
    assert x1["name"] == "x1" and x1["ui"] == 0.0 and not x1["read_by_pruned_model"]
    assert all(e["ui"] > 0 for e in rep["inputs"][1:])
    assert rep["least_important"][0]["name"] == "x1"
    assert "x1" in (tmp_path / "e" / "explain.md").read_text().split("never reads")[1]


def test_python_api(tmp_path, small_model, npy_data):
    net = load_network(small_model)
    ds = load_dataset(npy_data)
    expl = explain_network(net, ds, ExplainOptions(samples=16, estimator="permutation", top=2))
    assert np.allclose(expl.ui, expl.li[0].mean(axis=0))
    assert [li.shape for li in expl.li] == [layer.weight.shape for layer in net.layers]
    assert expl.names == [f"x{j}" for j in range(1, 13)] and expl.image_shape is None
    assert expl.pruned.sparsity > 0 and net.sparsity == 0  # the given network is not touched
    order = expl.ranking()
    assert np.all(np.diff(expl.ui[order]) <= 0)
    d = expl.to_dict()
    assert [e["index"] for e in d["most_important"]] == order[:2].tolist()
    files = write_explanation(expl, tmp_path / "out")
    assert files[-2:] == ["explain.json", "explain.md"]
    _check_outputs(tmp_path / "out", 4)


@pytest.mark.parametrize("args,needle", [
    (["{tmp}/nope.pt", "--data", "{npy}"], "nope.pt"),
    (["{model}", "--data", "synthetic6"], "features"),
    (["{model}", "--data", "{npy}", "-m", "1.5"], "--importance-level"),
    (["{model}", "--data", "{npy}", "--scores", "{tmp}/missing.npz"], "missing.npz"),
    (["{model}", "--data", "npy:{tmp}/nodata.npy"], "nodata.npy"),
])
def test_bad_input_is_one_line_and_writes_nothing(runner, tmp_path, small_model, npy_data,
                                                  args, needle):
    args = [a.format(tmp=tmp_path, npy=npy_data, model=small_model) for a in args]
    outdir = tmp_path / "never"
    _fails(runner.invoke(main, ["explain", *args, "-q", "-o", str(outdir)]), needle)
    assert not outdir.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_outdir_errors(runner, tmp_path, small_model, npy_data):
    _ok(runner.invoke(main, ["compress", str(small_model), "--data", npy_data, "-m", "0.8",
                             "--method", "magnitude", "--export", "npz", "-q",
                             "-o", str(tmp_path / "c")]))
    _fails(runner.invoke(main, ["explain", str(tmp_path / "c"), "-m", "0.5", "-q",
                                "-o", str(tmp_path / "e")]), "--importance-level")
    (tmp_path / "empty").mkdir()
    _fails(runner.invoke(main, ["explain", str(tmp_path / "empty"), "-q",
                                "-o", str(tmp_path / "e")]), "pruned.pt")
    assert not (tmp_path / "e").exists()
    (tmp_path / "file").write_text("x")
    result = runner.invoke(main, ["explain", str(small_model), "--data", npy_data, "-q",
                                  "-o", str(tmp_path / "file")])
    assert result.exit_code == 2 and "is a file" in result.output  # click's usage error
    with pytest.raises(EdgepruneError, match="-o .*not a directory"):  # the library says it too
        explain(small_model, tmp_path / "file", ExplainOptions(), data_spec=npy_data)
    assert (tmp_path / "file").read_text() == "x"


def test_paths_in_report_json_are_relative_to_the_report(runner, tmp_path, monkeypatch):
    """compress run in one folder, explain/export run from another: the original model, the
    data and the scores file recorded in report.json are found, not silently replaced."""
    from conftest import make_network

    from edgeprune.checkpoint import save_checkpoint

    work = tmp_path / "work"
    (work / "elsewhere").mkdir(parents=True)
    save_checkpoint(make_network(["relu", "sigmoid"], [12, 5, 12], latent=1), work / "model.pt")
    np.save(work / "data.npy", np.random.default_rng(5).random((300, 12), dtype=np.float32))
    monkeypatch.chdir(work)
    _ok(runner.invoke(main, ["score", "model.pt", "--data", "npy:data.npy", "--samples", "16",
                             "-q", "-o", "scores.npz"]))
    _ok(runner.invoke(main, ["compress", "model.pt", "--data", "npy:data.npy", "-m", "0.8",
                             "--scores", "scores.npz", "--export", "npz", "-q", "-o", "c"]))
    rep = json.loads((work / "c" / "report.json").read_text())
    assert rep["source"]["model"] == "../model.pt"
    assert rep["source"]["data"] == "npy:../data.npy" and rep["scoring"]["from"] == "../scores.npz"
    monkeypatch.chdir(work / "elsewhere")
    _ok(runner.invoke(main, ["explain", "../c", "-q", "-o", "../e"]))
    expl = json.loads((work / "e" / "explain.json").read_text())
    assert Path(expl["source"]["scored_model"]).resolve() == work / "model.pt"  # not pruned.pt
    _ok(runner.invoke(main, ["export", "../c", "--format", "npz", "-o", "../x"]))
