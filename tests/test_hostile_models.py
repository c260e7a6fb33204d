"""Hostile and broken model files through every command that reads a model (issue 19, classes
1, 4 and 5): each is refused with one ``Error:`` line naming the file, exit 1, no traceback, no
code from the file run, nothing written."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_network
from hostile_payloads import MARKER_BYTES, write_torchscript_payloads
from torch import nn

from edgeprune.checkpoint import load_network, network_state, save_checkpoint
from edgeprune.cli import main
from edgeprune.network import ModelError

# torch.jit.script/save are deprecated upstream but still what users hand us
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _state_with(tmp_path, name, edit):
    """An edgeprune checkpoint of a 12-6-12 network, edited by ``edit(state)``."""
    state = network_state(make_network(["relu", "sigmoid"], [12, 6, 12], latent=1))
    edit(state)
    path = tmp_path / name
    torch.save(state, path)
    return path


def _set(path, value):
    def edit(state):
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _nan_weight(state):
    state["state_dict"]["layer2.weight"][3, 1] = float("nan")


def _bad_files(tmp_path):
    """{name: (path, needle that the error must contain)}; the marker guards the payloads."""
    marker = tmp_path / "marker.bin"
    ts = write_torchscript_payloads(tmp_path, marker)
    pickled = tmp_path / "pickled.pt"
    torch.save(nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 12)), pickled)
    good = tmp_path / "good.pt"
    save_checkpoint(make_network(["relu", "sigmoid"], [12, 6, 12], latent=1), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    pickle_like = tmp_path / "pickle_like.pt"  # starts like a pickle, then garbage
    pickle_like.write_bytes(b"\x80\x02" + np.random.default_rng(1).bytes(4096))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    npz = tmp_path / "archive.pt"
    with zipfile.ZipFile(npz, "w") as zf:
        zf.writestr("a.npy", b"not a model")
    return marker, {
        "ts_forward": (ts["ts_forward.pt"], "--trust-code"),
        "ts_setstate": (ts["ts_setstate.pt"], "--trust-code"),
        "pickled_module": (pickled, "--trust-code"),
        "truncated": (truncated, "damaged"),
        "random_bytes": (random_bytes, "not a PyTorch model file"),
        "pickle_like_garbage": (pickle_like, "PyTorch model file"),
        "empty": (empty, "is empty"),
        "zip_not_torch": (npz, "not a PyTorch model file"),
        "nan_weight": (_state_with(tmp_path, "nan.pt", _nan_weight), "non-finite"),
        "future_version": (_state_with(tmp_path, "v99.pt", _set(["version"], 99)),
                           "version 99"),
        "version_is_text": (_state_with(tmp_path, "vtext.pt", _set(["version"], "1")),
                            "'version' must be an integer"),
        "layers_not_list": (_state_with(tmp_path, "layers.pt", _set(["meta", "layers"], "x")),
                            "meta.layers"),
        "weight_not_tensor": (_state_with(tmp_path, "wlist.pt",
                                          _set(["state_dict", "layer1.weight"], [1.0, 2.0])),
                              "layer1.weight"),
        "activation_not_text": (_state_with(tmp_path, "act.pt",
                                            _set(["meta", "layers", 0, "activation"], 3)),
                                "activation"),
        "missing_bias": (_state_with(tmp_path, "nobias.pt",
                                     lambda s: s["state_dict"].pop("layer2.bias")),
                         "layer2.bias"),
    }


COMMANDS = {
    "info": lambda m, d, o: ["info", m],
    "score": lambda m, d, o: ["score", m, "--data", d, "--samples", "8", "-q", "-o", o + ".npz"],
    "compress": lambda m, d, o: ["compress", m, "--data", d, "-m", "0.8", "-q", "-o", o],
    "explain": lambda m, d, o: ["explain", m, "--data", d, "-q", "-o", o],
    "export": lambda m, d, o: ["export", m, "--data", d, "-o", o],
    "bench": lambda m, d, o: ["bench", m, "--runs", "1", "--warmup", "0", "--min-time", "0",
                              "-q", "--json", o + ".json"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_bad_model_file_is_refused_in_one_line(tmp_path, npy_data, command):
    marker, cases = _bad_files(tmp_path)
    runner = CliRunner()
    for name, (path, needle) in cases.items():
        out = tmp_path / f"out_{name}"
        before = sorted(p.name for p in tmp_path.iterdir())
        result = runner.invoke(main, COMMANDS[command](str(path), npy_data, str(out)))
        text = result.output.strip()
        assert result.exit_code == 1, (name, text)
        assert "Traceback" not in text and len(text.splitlines()) == 1, (name, text)
        assert text.startswith("Error: ") and str(path.name) in text, (name, text)
        assert needle in text, (name, text)
        if needle != "--trust-code":  # garbage is never called code that could be trusted
            assert "trust" not in text, (name, text)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name  # nothing written
        assert marker.read_bytes() == MARKER_BYTES, name  # no code from the file ran


def test_trusted_torchscript_loads_and_runs_only_with_the_flag(tmp_path):
    marker = tmp_path / "marker.bin"
    ts = write_torchscript_payloads(tmp_path, marker)
    with pytest.raises(ModelError, match="unsupported module"):  # not a Linear chain, but
        load_network(ts["ts_setstate.pt"], trust_code=True)  # with consent its code ran
    assert marker.read_bytes() == b"BBBB"
    marker.write_bytes(MARKER_BYTES)
    load_network(ts["ts_forward.pt"], trust_pickle=True)  # the old flag name means the same
    assert marker.read_bytes() == b"AAAA"  # the conversion check ran its forward


def test_info_on_a_trusted_torchscript_names_its_layers(tmp_path):
    marker = tmp_path / "marker.bin"
    ts = write_torchscript_payloads(tmp_path, marker)
    result = CliRunner().invoke(main, ["info", str(ts["ts_forward.pt"]), "--trust-code"])
    assert result.exit_code == 0 and "layer 1: 12 x 12" in result.output, result.output


@pytest.mark.parametrize("suffix", [".onnx", ".tflite", ".npz"])
@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 50])
def test_info_and_bench_refuse_empty_and_garbage_artifacts(tmp_path, suffix, content):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    for args in (["info", str(path)], ["bench", str(path), "--runs", "1", "--warmup", "0",
                                       "--min-time", "0", "-q"]):
        result = CliRunner().invoke(main, args)
        text = result.output.strip()
        assert result.exit_code == 1 and text.startswith("Error: ") and path.name in text, text
        assert len(text.splitlines()) == 1 and "unexpected" not in text, text
