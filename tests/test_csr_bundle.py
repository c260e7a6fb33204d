"""The ``.npz`` CSR bundle: what the writer stores, its atomicity, and the loader's validation."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgeprune.compacted import CompactLayer, CompactNetwork
from edgeprune.exporters import csr as csr_module
from edgeprune.exporters.csr import save_bundle
from edgeprune.runtime import BundleError, load
from tests.factories import compact_mlp

Arrays = dict[str, np.ndarray]


def make_net(seed: int = 0) -> CompactNetwork:
    """Autoencoder 10 -> 6 -> latent 3 (of 4) -> 6 -> 10; input 2 unused, output 7 constant."""
    rng = np.random.default_rng(seed)
    input_index = np.array([0, 1, 3, 4, 5, 6, 7, 8, 9], dtype=np.int64)
    output_index = np.array([0, 1, 2, 3, 4, 5, 6, 8, 9], dtype=np.int64)
    shapes = [(6, 9), (3, 6), (6, 3), (9, 6)]
    acts = ["relu", "identity", "leaky_relu", "sigmoid"]
    layers = []
    for (rows, cols), act in zip(shapes, acts, strict=True):
        weight = rng.normal(size=(rows, cols)).astype(np.float32)
        mask = rng.random((rows, cols)) < 0.5
        mask[np.arange(rows), rng.integers(0, cols, size=rows)] = True
        mask[:, 0] = True  # every row holds at least two non-zeros somewhere
        mask[:, -1] = True
        weight[~mask] = 0.0
        layers.append(
            CompactLayer(
                weight=weight,
                bias=rng.normal(size=rows).astype(np.float32),
                activation=act,
                negative_slope=0.2,
                unit_index=np.arange(rows, dtype=np.int64),
            )
        )
    layers[1].unit_index = np.array([0, 2, 3], dtype=np.int64)
    layers[3].unit_index = output_index
    output_const = np.zeros(10, dtype=np.float32)
    output_const[7] = 0.5
    return compact_mlp(layers, 10, 10, input_index=input_index, output_index=output_index,
                       output_const=output_const, kind="autoencoder", latent_layer=2,
                       latent_dim=4, latent_const=np.array([0.0, -1.0, 0.0, 0.0], np.float32))


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """A version-1 bundle (one member per array): the layout older writers produced, which the
    loader still reads and checks member by member (version 3: tests/test_packed_bundle.py)."""
    return save_bundle(make_net(), tmp_path / "good.npz", packed=False)


def read_all(path: Path) -> Arrays:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def meta_of(arrays: Arrays) -> dict:
    return json.loads(str(arrays["meta"].item()))


# -- the writer ---------------------------------------------------------------------------------


def test_writer_layout(good: Path) -> None:
    net = make_net()
    arrays = read_all(good)
    meta = meta_of(arrays)
    assert meta["format"] == "edgeprune-csr" and meta["version"] == 1
    assert meta["kind"] == "autoencoder"
    assert (meta["input_dim"], meta["output_dim"]) == (10, 10)
    assert (meta["latent_layer"], meta["latent_dim"]) == (2, 4)
    assert meta["provenance"] == {} and meta["report"] == {}
    assert arrays["meta"].ndim == 0 and arrays["meta"].dtype.kind == "U"
    assert len(meta["layers"]) == 4
    for k, (layer, entry) in enumerate(zip(net.layers, meta["layers"], strict=True), start=1):
        rows, cols = layer.weight.shape
        assert entry == {
            "activation": layer.activation,
            "negative_slope": 0.2,
            "shape": [rows, cols],
            "nnz": layer.nnz,
        }
        data, indices = arrays[f"layer{k}.data"], arrays[f"layer{k}.indices"]
        indptr, bias = arrays[f"layer{k}.indptr"], arrays[f"layer{k}.bias"]
        assert data.dtype == np.float32 and bias.dtype == np.float32
        assert indices.dtype == np.int32 and indptr.dtype == np.int32
        assert data.shape == indices.shape == (layer.nnz,)
        assert indptr.shape == (rows + 1,) and indptr[0] == 0 and indptr[-1] == layer.nnz
        assert np.all(data != 0)
        rebuilt = np.zeros((rows, cols), dtype=np.float32)
        for r in range(rows):
            cols_r = indices[indptr[r] : indptr[r + 1]]
            assert np.all(np.diff(cols_r) > 0)
            rebuilt[r, cols_r] = data[indptr[r] : indptr[r + 1]]
        np.testing.assert_array_equal(rebuilt, layer.weight)
        np.testing.assert_array_equal(bias, layer.bias)
    assert arrays["input_index"].dtype == np.int64
    assert arrays["output_index"].dtype == np.int64
    assert arrays["output_const"].dtype == np.float32
    np.testing.assert_array_equal(arrays["input_index"], net.input_index)
    np.testing.assert_array_equal(arrays["output_index"], net.output_index)
    np.testing.assert_array_equal(arrays["output_const"], net.output_const)
    assert arrays["latent_index"].dtype == np.int64
    np.testing.assert_array_equal(arrays["latent_index"], [0, 2, 3])
    np.testing.assert_array_equal(arrays["latent_const"], net.latent_const)
    assert arrays["latent_const"].dtype == np.float32


def test_writer_drops_explicit_and_negative_zeros(tmp_path: Path) -> None:
    net = make_net()
    net.layers[0].weight[0, :] = 0.0
    net.layers[0].weight[0, 0] = -0.0
    net.layers[0].weight[0, 4] = 2.0
    arrays = read_all(save_bundle(net, tmp_path / "z.npz", packed=False))
    indptr = arrays["layer1.indptr"]
    np.testing.assert_array_equal(arrays["layer1.indices"][indptr[0] : indptr[1]], [4])
    assert meta_of(arrays)["layers"][0]["nnz"] == net.layers[0].nnz


def test_writer_meta_provenance_and_report(tmp_path: Path) -> None:
    path = save_bundle(
        make_net(),
        tmp_path / "model.bundle",  # name used as given: no ".npz" appended
        provenance={"checkpoint": Path("model.pt"), "seed": np.int64(3)},
        report={"sparsity": np.float32(0.75), "per_layer": np.array([1, 2]), "auc": float("nan")},
    )
    assert path == tmp_path / "model.bundle" and path.exists()
    assert sorted(os.listdir(tmp_path)) == ["model.bundle"]
    meta = load(path).meta
    assert meta["provenance"] == {"checkpoint": "model.pt", "seed": 3}
    assert meta["report"] == {"sparsity": 0.75, "per_layer": [1, 2], "auc": None}


def test_writer_defaults_to_net_meta(tmp_path: Path) -> None:
    net = make_net()
    net.meta = {"provenance": {"from": "net"}, "report": {"sparsity": 0.5}}
    assert load(save_bundle(net, tmp_path / "m.npz")).meta["report"] == {"sparsity": 0.5}


def test_writer_refuses_inconsistent_network(tmp_path: Path) -> None:
    net = make_net()
    net.layers[2].weight[0, 0] = np.nan
    with pytest.raises(ValueError, match="layer3.data"):
        save_bundle(net, tmp_path / "bad.npz")
    net = make_net()
    net.layers[1].bias = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError, match="bias"):
        save_bundle(net, tmp_path / "bad.npz")
    net = make_net()
    net.input_index = net.input_index[:-1]
    with pytest.raises(ValueError, match="input_index"):
        save_bundle(net, tmp_path / "bad.npz")
    assert os.listdir(tmp_path) == []


# -- atomic writing -----------------------------------------------------------------------------


def _failing_serialize(*args: object, **kwargs: object) -> bytes:
    raise OSError("disk full")  # inside the write: the temporary file exists by then


def test_atomic_write_leaves_nothing_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csr_module, "serialize", _failing_serialize)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(make_net(), tmp_path / "model.npz")
    assert os.listdir(tmp_path) == []


def test_atomic_write_keeps_old_file_on_failure(
    good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = good.read_bytes()
    monkeypatch.setattr(csr_module, "serialize", _failing_serialize)
    with pytest.raises(OSError):
        save_bundle(make_net(seed=9), good)
    assert good.read_bytes() == before
    assert os.listdir(good.parent) == [good.name]


def test_atomic_write_cleans_up_on_interrupt_and_replace_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> bytes:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(csr_module, "serialize", interrupted)
        with pytest.raises(KeyboardInterrupt):
            save_bundle(make_net(), tmp_path / "model.npz")
    assert os.listdir(tmp_path) == []

    def no_replace(src: object, dst: object) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(csr_module.os, "replace", no_replace)
    with pytest.raises(PermissionError):
        save_bundle(make_net(), tmp_path / "model.npz")
    assert os.listdir(tmp_path) == []


def test_overwrite_replaces_content(good: Path) -> None:
    other = make_net(seed=4)
    save_bundle(other, good)
    x = np.random.default_rng(0).normal(size=(8, 10)).astype(np.float32)
    assert np.abs(load(good)(x) - other.forward(x)).max() <= 1e-5
    assert os.listdir(good.parent) == [good.name]


# -- corrupted bundles --------------------------------------------------------------------------


def _set(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Arrays], None]:
    def mutate(arrays: Arrays) -> None:
        arrays[name] = fn(arrays[name].copy())

    return mutate


def _poke(name: str, pos: int, value: float) -> Callable[[Arrays], None]:
    def fn(arr: np.ndarray) -> np.ndarray:
        arr[pos] = value
        return arr

    return _set(name, fn)


def _drop(name: str) -> Callable[[Arrays], None]:
    def mutate(arrays: Arrays) -> None:
        del arrays[name]

    return mutate


def _meta(fn: Callable[[dict], None]) -> Callable[[Arrays], None]:
    def mutate(arrays: Arrays) -> None:
        meta = meta_of(arrays)
        fn(meta)
        arrays["meta"] = np.array(json.dumps(meta))

    return mutate


def _non_monotone(arr: np.ndarray) -> np.ndarray:
    arr[1] = arr[-1]  # indptr[2] < nnz, so the step 1 -> 2 goes down
    return arr


def _unsorted_row(arr: np.ndarray) -> np.ndarray:
    arr[0], arr[1] = arr[1], arr[0]  # row 0 holds at least two entries
    return arr


def _set_item(key: str, value: object) -> Callable[[dict], None]:
    return lambda meta: meta.__setitem__(key, value)


CORRUPTIONS: dict[str, tuple[Callable[[Arrays], None], str]] = {
    "missing data": (_drop("layer2.data"), "layer2.data is missing"),
    "missing indptr": (_drop("layer4.indptr"), "layer4.indptr is missing"),
    "missing output_const": (_drop("output_const"), "output_const is missing"),
    "missing latent_index": (_drop("latent_index"), "latent_index is missing"),
    "missing meta": (_drop("meta"), "meta is missing"),
    "float64 data": (_set("layer1.data", lambda a: a.astype(np.float64)), "layer1.data has dtype"),
    "int64 indptr": (
        _set("layer2.indptr", lambda a: a.astype(np.int64)),
        "layer2.indptr has dtype",
    ),
    "int64 indices": (
        _set("layer3.indices", lambda a: a.astype(np.int64)),
        "layer3.indices has dtype",
    ),
    "float64 bias": (_set("layer1.bias", lambda a: a.astype(np.float64)), "layer1.bias has dtype"),
    "int32 input_index": (
        _set("input_index", lambda a: a.astype(np.int32)),
        "input_index has dtype",
    ),
    "float16 output_const": (
        _set("output_const", lambda a: a.astype(np.float16)),
        "output_const has dtype",
    ),
    "big-endian data": (_set("layer1.data", lambda a: a.astype(">f4")), "layer1.data has dtype"),
    "2-D bias": (_set("layer1.bias", lambda a: a[:, None]), "layer1.bias must be 1-D"),
    "short data": (_set("layer1.data", lambda a: a[:-1]), "layer1.data has length"),
    "column out of range": (_poke("layer1.indices", -1, 9), "layer1.indices has column index 9"),
    "negative column": (_poke("layer2.indices", 0, -1), "layer2.indices has negative column index"),
    "unsorted row": (_set("layer1.indices", _unsorted_row), "layer1.indices has unsorted"),
    "duplicate column": (
        _set("layer3.indices", lambda a: np.concatenate([a[:1], a[:1], a[2:]])),
        "layer3.indices has unsorted or duplicate",
    ),
    "non-monotone indptr": (_set("layer1.indptr", _non_monotone), "layer1.indptr is not monotone"),
    "indptr end != nnz": (_poke("layer2.indptr", -1, 1000), "layer2.indptr ends at 1000"),
    "indptr start != 0": (_poke("layer3.indptr", 0, 1), "layer3.indptr starts at 1"),
    "NaN in data": (_poke("layer3.data", 2, np.nan), "layer3.data holds a non-finite value"),
    "inf in bias": (_poke("layer2.bias", 1, np.inf), "layer2.bias holds a non-finite value"),
    "-inf in output_const": (_poke("output_const", 7, -np.inf), "output_const holds a non-finite"),
    "NaN in latent_const": (_poke("latent_const", 1, np.nan), "latent_const holds a non-finite"),
    "input_index out of range": (_poke("input_index", -1, 10), "input_index has index 10"),
    "input_index negative": (_poke("input_index", 0, -3), "input_index has negative index"),
    "input_index not increasing": (
        _set("input_index", lambda a: a[::-1].copy()),
        "input_index is not strictly increasing",
    ),
    "input_index too short": (_set("input_index", lambda a: a[:-1]), "input_index has 8 entries"),
    "output_index out of range": (_poke("output_index", 3, 10), "output_index has index 10"),
    "output_index duplicate": (_poke("output_index", 1, 0), "output_index holds duplicate"),
    "output_index too long": (
        _set("output_index", lambda a: np.append(a, 7)),
        "output_index has 10 entries",
    ),
    "latent_index out of range": (_poke("latent_index", 0, 4), "latent_index has index 4"),
    "latent_const wrong length": (
        _set("latent_const", lambda a: a[:3]),
        "latent_const has length 3",
    ),
    "unexpected array": (
        lambda arrays: arrays.__setitem__("layer5.data", np.zeros(1, np.float32)),
        "layer5.data is not part of a bundle",
    ),
    "bad meta JSON": (
        lambda arrays: arrays.__setitem__("meta", np.array('{"format": "edgeprune-csr",')),
        "meta is not valid JSON",
    ),
    "meta not an object": (
        lambda arrays: arrays.__setitem__("meta", np.array("[1, 2]")),
        "meta must be a JSON object",
    ),
    "meta as bytes": (
        lambda arrays: arrays.__setitem__("meta", np.array(b"{}")),
        "meta must be a 0-d unicode array",
    ),
    "wrong format": (_meta(_set_item("format", "onnx")), "meta.format is 'onnx'"),
    "future version": (_meta(_set_item("version", 5)), "meta.version is 5"),
    "unknown activation": (
        _meta(lambda m: m["layers"][1].__setitem__("activation", "gelu")),
        "meta.layers[2].activation is 'gelu'",
    ),
    "mismatched layer shapes": (
        _meta(lambda m: m["layers"][2]["shape"].__setitem__(1, 4)),
        "meta.layers[3].shape has 4 columns but layer2 has 3 rows",
    ),
    "shape vs indptr": (
        _meta(lambda m: m["layers"][0]["shape"].__setitem__(0, 7)),
        "layer1.indptr has length 7, expected 8",
    ),
    "nnz vs data": (
        _meta(lambda m: m["layers"][0].__setitem__("nnz", 3)),
        "layer1.data has length",
    ),
    "latent layer beyond the layers": (
        _meta(_set_item("latent_layer", 5)),
        "meta.latent_layer is 5",
    ),
    "latent arrays without latent layer": (
        _meta(_set_item("latent_layer", None)),
        "is not part of a bundle with 4 layer(s) and no latent layer",
    ),
    "non-integer input_dim": (_meta(_set_item("input_dim", 10.5)), "meta.input_dim must be"),
    "missing layers list": (_meta(lambda m: m.pop("layers")), "meta.layers must be a list"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corruption_is_refused_with_field_named(good: Path, tmp_path: Path, case: str) -> None:
    mutate, expected = CORRUPTIONS[case]
    arrays = read_all(good)
    mutate(arrays)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(BundleError, match=re.escape(expected)) as info:
        load(bad)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{bad}: ")
    assert isinstance(info.value, ValueError)


def test_truncated_file(good: Path, tmp_path: Path) -> None:
    raw = good.read_bytes()
    for size in (len(raw) // 2, len(raw) - 10, 10, 0):
        bad = tmp_path / f"cut{size}.npz"
        bad.write_bytes(raw[:size])
        with pytest.raises(BundleError, match=r"file is truncated") as info:
            load(bad)
        assert str(info.value).startswith(f"{bad}: ")


def test_damaged_member_is_reported(good: Path, tmp_path: Path) -> None:
    raw = bytearray(good.read_bytes())
    # Flip bytes inside the stored layer1.data member: the zip CRC no longer matches.
    start = raw.index(b"layer1.data.npy") + len(b"layer1.data.npy") + 140
    raw[start : start + 8] = bytes(b ^ 0xFF for b in raw[start : start + 8])
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(
        BundleError, match=r"layer1\.data cannot be read: the archive is truncated or damaged"
    ):
        load(bad)


def test_not_a_zip_and_other_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.npz"
    text.write_text("this is not a bundle at all\n")
    with pytest.raises(BundleError, match=r"file is not an \.npz archive"):
        load(text)
    npy = tmp_path / "array.npz"
    with npy.open("wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(BundleError, match=r"single \.npy array"):
        load(npy)
    with pytest.raises(BundleError, match="does not exist"):
        load(tmp_path / "missing.npz")
    with pytest.raises(BundleError, match="is a directory"):
        load(tmp_path)


_UNPICKLED: list[str] = []


def _record_unpickle(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


class _Trap:
    """Unpickling this object would call ``_record_unpickle``."""

    def __reduce__(self) -> tuple[Callable[[str], str], tuple[str]]:
        return _record_unpickle, ("unpickled!",)


def test_pickled_object_array_is_refused_not_unpickled(good: Path, tmp_path: Path) -> None:
    arrays = read_all(good)
    trap = np.empty(2, dtype=object)
    trap[0], trap[1] = _Trap(), 1.0
    arrays["layer1.data"] = trap
    bad = tmp_path / "pickled.npz"
    np.savez(bad, **arrays)  # numpy pickles object arrays when writing
    _UNPICKLED.clear()
    with pytest.raises(BundleError, match=r"layer1\.data is a pickled object array"):
        load(bad)
    assert _UNPICKLED == []

    arrays = read_all(good)
    arrays["meta"] = np.array([{"format": "edgeprune-csr"}], dtype=object)
    np.savez(bad, **arrays)
    with pytest.raises(BundleError, match=r"meta is a pickled object array"):
        load(bad)


def test_zero_layer_bundle_validation(tmp_path: Path) -> None:
    net = compact_mlp([], 3, 2, input_index=[], output_const=[1.0, 2.0])
    path = save_bundle(net, tmp_path / "empty.npz", packed=False)
    arrays = read_all(path)
    assert meta_of(arrays)["layers"] == []
    np.testing.assert_array_equal(load(path)(np.zeros(3)), [1.0, 2.0])
    arrays["output_index"] = np.array([0], dtype=np.int64)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(
        BundleError, match="output_index has 1 entries but the bundle has no layers"
    ):
        load(tmp_path / "bad.npz")
