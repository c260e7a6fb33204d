"""Quantized bundles: int8 weights, shared weights, compact indices, row lengths; parity, and
hostile arrays in the one-member-per-array layout of version 2 (the packed version 3:
tests/test_packed_bundle.py)."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from edgeprune.exporters.csr import bundle_arrays, save_bundle
from edgeprune.exporters.quantize import encode_delta8, quantize_network_weights, quantize_rows
from edgeprune.runtime import BundleError, load
from edgeprune.runtime.bundle import read_arrays, read_bundle
from edgeprune.runtime.quant import decode_delta8
from tests.factories import compact_layer, compact_mlp
from tests.test_csr_bundle import make_net, meta_of, read_all

Arrays = dict[str, np.ndarray]
X = np.random.default_rng(7).random((16, 10)).astype(np.float32)


def reference(net, weights=None) -> np.ndarray:
    """The network in float64 numpy, optionally with other weights (the dequantized ones)."""
    acts = {"relu": lambda v: np.maximum(v, 0), "identity": lambda v: v,
            "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
            "leaky_relu": lambda v: np.where(v > 0, v, 0.2 * v)}
    h = X[:, net.input_index].astype(np.float64)
    for k, layer in enumerate(net.layers):
        w = layer.weight if weights is None else weights[k]
        h = acts[layer.activation](h @ np.asarray(w, np.float64).T + layer.bias)
    out = np.tile(net.output_const.astype(np.float64), (len(X), 1))
    out[:, net.output_index] = h
    return out


@pytest.mark.parametrize("indices", ["auto", "uint8", "uint16", "int32", "delta8"])
def test_int8_bundle_matches_the_dequantized_network(tmp_path: Path, indices: str) -> None:
    net = make_net()
    path = save_bundle(net, tmp_path / "q.npz", quantize="int8", indices=indices)
    deq = quantize_network_weights([layer.weight for layer in net.layers])
    got = load(path)(X)
    assert np.abs(got - reference(net, deq)).max() < 1e-5
    # and int8 stays close to float32: |error| per weight <= scale / 2
    assert np.abs(got - reference(net)).max() < 0.05
    meta = meta_of(read_all(path))
    assert meta["version"] == 3
    assert all(entry["weights"] == "int8" for entry in meta["layers"])


@pytest.mark.parametrize("indices", ["uint8", "delta8"])
def test_float32_compact_indices_are_exact(tmp_path: Path, indices: str) -> None:
    net = make_net()
    for packed, version in ((True, 3), (False, 2)):
        path = save_bundle(net, tmp_path / f"c{version}.npz", indices=indices, packed=packed)
        assert np.abs(load(path)(X) - reference(net)).max() < 1e-5
        assert meta_of(read_all(path))["version"] == version


def test_unpacked_float32_bundle_stays_version_1(tmp_path: Path) -> None:
    arrays = read_all(save_bundle(make_net(), tmp_path / "v1.npz", packed=False))
    assert meta_of(arrays)["version"] == 1
    assert arrays["layer1.indices"].dtype == np.int32 and "layer1.indptr" in arrays


def test_version_1_bundles_written_stored_still_load(tmp_path: Path) -> None:
    arrays = bundle_arrays(make_net(), packed=False)
    np.savez(tmp_path / "old.npz", **arrays)  # exactly what the v1 writer produced
    assert np.abs(load(tmp_path / "old.npz")(X) - reference(make_net())).max() < 1e-5


def test_layout_of_a_quantized_layer(tmp_path: Path) -> None:
    arrays = read_arrays(save_bundle(make_net(), tmp_path / "q.npz", quantize="int8",
                                     indices="uint8"))
    assert arrays["layer1.qdata"].dtype == np.int8
    assert arrays["layer1.scale"].dtype == np.float32 and arrays["layer1.scale"].shape == (6,)
    assert arrays["layer1.indices"].dtype == np.uint8
    assert arrays["layer1.rowlen"].dtype == np.uint8
    assert "layer1.data" not in arrays and "layer1.indptr" not in arrays
    assert np.abs(arrays["layer1.qdata"]).max() == 127  # each row's largest weight is +-127


def test_quantize_rows_is_symmetric_per_row() -> None:
    w = np.array([[0.0, 2.0, -1.0], [0.0, 0.0, 0.0], [1e-3, 0.0, -4e-3]], np.float32)
    q, scale = quantize_rows(sp.csr_matrix(w))
    assert scale.tolist() == pytest.approx([2 / 127, 1.0, 4e-3 / 127])
    assert q.tolist() == [127, -64, 32, -127]


def test_delta8_round_trip_with_escapes() -> None:
    indices = np.array([0, 254, 255, 256, 700, 3, 600, 601], np.int64)
    indptr = np.array([0, 5, 5, 8])
    codes = encode_delta8(indices, indptr)
    assert (codes == 255).sum() == 3  # gaps 444 = 255 + 189 and 597 = 2 * 255 + 87
    decoded, problem = decode_delta8(codes, indptr)
    assert problem == "" and decoded.tolist() == indices.tolist()


def test_decoder_refuses_a_trailing_escape() -> None:
    codes = np.array([3, 255], np.uint8)
    assert decode_delta8(codes, np.array([0, 1])) == (None, "ends with an escape code (255) "
                                                      "that no column follows")


def test_wide_layer_picks_uint16_or_delta8(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = np.where(rng.random((8, 700)) < 0.05, rng.normal(size=(8, 700)), 0).astype(np.float32)
    w[:, 0] = 1.0
    net = compact_mlp([compact_layer(w, np.zeros(8), "identity")], 700, 8)
    arrays = read_all(save_bundle(net, tmp_path / "w.npz", quantize="int8"))
    entry = meta_of(arrays)["layers"][0]
    assert entry["indices"] in ("uint16", "delta8", "bitmask")
    x = rng.random((3, 700)).astype(np.float32)
    deq = quantize_network_weights([w])[0]
    assert np.abs(load(tmp_path / "w.npz")(x) - x @ deq.T).max() < 1e-5


# -- hostile arrays -------------------------------------------------------------------------


@pytest.fixture
def quantized(tmp_path: Path) -> Path:
    return save_bundle(make_net(), tmp_path / "q.npz", quantize="int8", indices="uint8",
                       packed=False)


@pytest.fixture
def delta(tmp_path: Path) -> Path:
    return save_bundle(make_net(), tmp_path / "d.npz", quantize="int8", indices="delta8",
                       packed=False)


def _set(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Arrays], None]:
    return lambda arrays: arrays.__setitem__(name, fn(arrays[name].copy()))


def _at(pos: int, value) -> Callable[[np.ndarray], np.ndarray]:
    def mutate(arr: np.ndarray) -> np.ndarray:
        arr[pos] = value
        return arr

    return mutate


def _layer_meta(key: str, value) -> Callable[[Arrays], None]:
    def mutate(arrays: Arrays) -> None:
        meta = meta_of(arrays)
        meta["layers"][0][key] = value
        arrays["meta"] = np.array(json.dumps(meta))

    return mutate


HOSTILE: dict[str, tuple[Callable[[Arrays], None], str]] = {
    "zero scale": (_set("layer1.scale", _at(2, 0.0)), "layer1.scale holds 0.0 at row 2"),
    "negative scale": (_set("layer1.scale", _at(0, -1.0)), "layer1.scale holds -1.0 at row 0"),
    "nan scale": (_set("layer1.scale", _at(1, np.nan)), "layer1.scale holds a non-finite"),
    "inf scale": (_set("layer2.scale", _at(0, np.inf)), "layer2.scale holds a non-finite"),
    "huge scale overflows": (_set("layer1.scale", _at(0, 3e38)),
                             "layer1.qdata * layer1.scale holds a non-finite"),
    "qdata -128": (_set("layer1.qdata", _at(3, -128)),
                   "layer1.qdata holds -128 at position 3, outside the symmetric range"),
    "qdata as int16": (_set("layer1.qdata", lambda a: a.astype(np.int16)),
                       "layer1.qdata has dtype int16, expected int8"),
    "qdata short": (_set("layer1.qdata", lambda a: a[:-1]), "layer1.qdata has length"),
    "scale short": (_set("layer1.scale", lambda a: a[:-1]), "layer1.scale has length 5"),
    "scale as float64": (_set("layer1.scale", lambda a: a.astype(np.float64)),
                         "layer1.scale has dtype float64, expected float32"),
    "indices as int64": (_set("layer1.indices", lambda a: a.astype(np.int64)),
                         "layer1.indices has dtype int64, expected uint8"),
    "index out of range": (_set("layer1.indices", _at(0, 200)),
                           "layer1.indices has column index 200"),
    "rowlen sum": (_set("layer1.rowlen", _at(0, 0)), "layer1.rowlen sums to"),
    "rowlen as int64": (_set("layer1.rowlen", lambda a: a.astype(np.int64)),
                        "layer1.rowlen has dtype int64, expected uint8"),
    "missing scale": (lambda a: a.pop("layer3.scale"), "layer3.scale is missing"),
    "stray float data": (lambda a: a.__setitem__("layer1.data", np.zeros(3, np.float32)),
                         "layer1.data is not part of a bundle"),
    "unknown weights coding": (_layer_meta("weights", "int4"),
                               "meta.layers[1].weights is 'int4', expected one of"),
    "unknown index coding": (_layer_meta("indices", "varint"),
                             "meta.layers[1].indices is 'varint'"),
    "missing coding": (lambda a: _layer_meta("rowlen", None)(a) or _drop_key(a, "rowlen"),
                       "meta.layers[1].rowlen is missing"),
    "v2 field in v1": (lambda a: _version(a, 1), "is a version-2 field in a version-1 bundle"),
}


def _drop_key(arrays: Arrays, key: str) -> None:
    meta = meta_of(arrays)
    del meta["layers"][0][key]
    arrays["meta"] = np.array(json.dumps(meta))


def _version(arrays: Arrays, version: int) -> None:
    meta = meta_of(arrays)
    meta["version"] = version
    arrays["meta"] = np.array(json.dumps(meta))


def _refused(arrays: Arrays, tmp_path: Path, expected: str) -> str:
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(BundleError, match=re.escape(expected)) as info:
        load(bad)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(bad))
    return message


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_quantized_arrays_are_refused(quantized: Path, tmp_path: Path,
                                              case: str) -> None:
    mutate, expected = HOSTILE[case]
    arrays = read_all(quantized)
    mutate(arrays)
    _refused(arrays, tmp_path, expected)


DELTA_HOSTILE: dict[str, tuple[Callable[[Arrays], None], str]] = {
    "escape where no gap can reach 255": (
        _set("layer1.indices", lambda a: np.append(a, np.uint8(255))),
        "layer1.indices has length 36, expected at most 35"),
    "one column short": (_set("layer1.indices", lambda a: a[:-1]),
                         "layer1.indices encodes"),
    "column beyond cols": (_set("layer1.indices", _at(-1, 254)),
                           "layer1.indices decodes to column index"),
    "duplicate column": (_set("layer1.indices", _at(1, 0)),
                         "layer1.indices has unsorted or duplicate column indices in row 0"),
    "too many codes": (_set("layer1.indices", lambda a: np.concatenate(
        [np.full(40, 255, np.uint8), a])), "layer1.indices has length"),
    "codes as int8": (_set("layer1.indices", lambda a: a.astype(np.int8)),
                      "layer1.indices has dtype int8, expected uint8"),
}


@pytest.mark.parametrize("case", sorted(DELTA_HOSTILE))
def test_hostile_delta8_streams_are_refused(delta: Path, tmp_path: Path, case: str) -> None:
    mutate, expected = DELTA_HOSTILE[case]
    arrays = read_all(delta)
    mutate(arrays)
    _refused(arrays, tmp_path, expected)


def test_narrow_coding_too_small_for_the_columns_is_refused(quantized: Path,
                                                            tmp_path: Path) -> None:
    arrays = read_all(quantized)
    meta = meta_of(arrays)
    meta["layers"][0]["shape"][1] = 300  # uint8 indices cannot reach column 299
    arrays["meta"] = np.array(json.dumps(meta))
    _refused(arrays, tmp_path, "meta.layers[1].indices is uint8 but 300 columns need")


def test_oversized_new_members_are_refused_from_their_headers(quantized: Path,
                                                              tmp_path: Path) -> None:
    """A qdata/scale/rowlen member declaring more than meta allows is refused before reading."""
    for name, dtype in (("layer1.qdata", np.int8), ("layer1.scale", np.float32),
                        ("layer1.rowlen", np.uint8), ("layer1.indices", np.uint8)):
        arrays = read_all(quantized)
        arrays[name] = np.zeros(10_000, dtype)
        bad = tmp_path / "big.npz"
        np.savez_compressed(bad, **arrays)
        with pytest.raises(BundleError, match=re.escape(f"{name} has length 10000")):
            read_bundle(bad)


def test_new_member_names_are_known_to_the_header_scan(quantized: Path) -> None:
    with zipfile.ZipFile(quantized) as zf:
        names = set(zf.namelist())
    assert {"layer1.qdata.npy", "layer1.scale.npy", "layer1.rowlen.npy"} <= names


# -- weight sharing (shared4) -----------------------------------------------------------------


def test_shared4_bundle_matches_the_shared_network(tmp_path: Path) -> None:
    net = make_net()
    path = save_bundle(net, tmp_path / "s.npz", quantize="shared4")
    arrays = read_arrays(path)
    assert arrays["layer1.codes"].dtype == np.uint8 and arrays["layer1.codes"].max() < 16
    assert arrays["layer1.codebook"].dtype == np.float32
    assert arrays["layer1.codebook"].shape[0] <= 16
    deq = quantize_network_weights([layer.weight for layer in net.layers], "shared4")
    assert np.abs(load(path)(X) - reference(net, deq)).max() < 1e-5
    for w, d in zip((layer.weight for layer in net.layers), deq, strict=True):
        assert len(np.unique(d[w != 0])) <= 16


def test_share_weights_recovers_clustered_values() -> None:
    from edgeprune.exporters.quantize import share_weights

    values = np.repeat(np.linspace(-1, 1, 16), 20) + np.random.default_rng(0).normal(0, 1e-4, 320)
    codes, codebook = share_weights(values)
    assert codebook.shape == (16,) and np.abs(codebook[codes] - values).max() < 1e-3


SHARED_HOSTILE: dict[str, tuple[Callable[[Arrays], None], str]] = {
    "code beyond the codebook": (_set("layer1.codes", _at(0, 200)),
                                 "layer1.codes holds code 200 at position 0, outside"),
    "nan in codebook": (_set("layer1.codebook", _at(0, np.nan)),
                        "layer1.codebook holds a non-finite"),
    "codebook too long": (_set("layer1.codebook", lambda a: np.zeros(17, np.float32)),
                          "layer1.codebook has length 17, expected at most 16"),
    "empty codebook": (_set("layer1.codebook", lambda a: np.zeros(0, np.float32)),
                       "layer1.codebook has length 0, expected 1..16"),
    "codes as int8": (_set("layer1.codes", lambda a: a.astype(np.int8)),
                      "layer1.codes has dtype int8, expected uint8"),
}


@pytest.mark.parametrize("case", sorted(SHARED_HOSTILE))
def test_hostile_shared_arrays_are_refused(tmp_path: Path, case: str) -> None:
    mutate, expected = SHARED_HOSTILE[case]
    arrays = read_all(save_bundle(make_net(), tmp_path / "s.npz", quantize="shared4",
                                  packed=False))
    mutate(arrays)
    _refused(arrays, tmp_path, expected)
