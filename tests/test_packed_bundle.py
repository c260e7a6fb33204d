"""Bundle version 3: the packed container (meta + one blob), bitmask indices, shared5/6 codebooks,
narrow index maps, LZMA members; every storage variant against the network it stores, the
bundles of versions 1 and 2 written by earlier releases, and hostile packed files."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgeprune.exporters.csr import bundle_arrays, save_bundle, serialize
from edgeprune.exporters.packing import pack_arrays, zip_members
from edgeprune.exporters.quantize import encode_bitmask, quantize_network_weights
from edgeprune.runtime import BundleError, load
from edgeprune.runtime.bundle import read_arrays, read_bundle
from edgeprune.runtime.quant import decode_bitmask
from tests.factories import compact_layer, compact_mlp
from tests.test_csr_bundle import make_net, meta_of
from tests.test_quantized_bundle import X, reference

Arrays = dict[str, np.ndarray]
FIXTURES = Path(__file__).parent / "fixtures" / "old_bundles"


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["stored", "deflate", "lzma"])
@pytest.mark.parametrize("indices", ["auto", "uint8", "int32", "delta8", "bitmask"])
@pytest.mark.parametrize("quantize", ["none", "int8", "shared4", "shared5", "shared6"])
def test_every_storage_variant_computes_its_network(tmp_path: Path, quantize: str, indices: str,
                                                    compression: str) -> None:
    net = make_net()
    path = save_bundle(net, tmp_path / "m.npz", quantize=quantize, indices=indices,
                       compression=compression)
    weights = ([layer.weight for layer in net.layers] if quantize == "none" else
               quantize_network_weights([layer.weight for layer in net.layers], quantize))
    assert np.abs(load(path)(X) - reference(net, weights)).max() < 1e-5
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == ["meta.npy", "blob.npy"]
    method = {"stored": zipfile.ZIP_STORED, "deflate": zipfile.ZIP_DEFLATED,
              "lzma": zipfile.ZIP_LZMA}[compression]
    assert {i.compress_type for i in infos} == {method}
    meta = meta_of(read_arrays(path))
    assert meta["version"] == 3
    if indices != "auto":
        assert {entry["indices"] for entry in meta["layers"]} == {indices}


def test_packed_layout_narrow_maps_and_table(tmp_path: Path) -> None:
    arrays = read_arrays(save_bundle(make_net(), tmp_path / "m.npz", quantize="int8"))
    meta = meta_of(arrays)
    assert arrays["input_index"].dtype == np.uint8  # 10 inputs: uint8 holds index 9
    assert arrays["output_index"].dtype == np.uint8 and arrays["latent_index"].dtype == np.uint8
    names = [entry[0] for entry in meta["blob"]["arrays"]]
    assert names[:4] == ["layer1.qdata", "layer2.qdata", "layer3.qdata", "layer4.qdata"]
    ends = [offset + length * np.dtype(dtype).itemsize
            for _, dtype, offset, length, *_ in meta["blob"]["arrays"]]
    assert ends[-1] == meta["blob"]["bytes"]
    assert read_bundle(tmp_path / "m.npz").input_index.dtype == np.int64  # widened at load


def test_wide_maps_take_uint16(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w = np.where(rng.random((300, 300)) < 0.1, rng.normal(size=(300, 300)), 0)
    net = compact_mlp([compact_layer(w, np.zeros(300), "identity")], 300, 300)
    arrays = read_arrays(save_bundle(net, tmp_path / "w.npz"))
    assert arrays["input_index"].dtype == np.uint16
    x = rng.random((4, 300)).astype(np.float32)
    assert np.abs(load(tmp_path / "w.npz")(x) - x @ w.T).max() < 1e-4


def test_bitmask_round_trip_and_dense_layer(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    mask = rng.random((5, 13)) < 0.5
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))])
    indices = np.nonzero(mask)[1]
    codes = encode_bitmask(indices, indptr, 5, 13)
    assert codes.shape == (9,)  # ceil(65 / 8)
    decoded, problem = decode_bitmask(codes, 5, 13)
    assert problem == "" and decoded[0].tolist() == indices.tolist()
    assert decoded[1].tolist() == mask.sum(axis=1).tolist()
    # an unpruned layer: the mask is all ones and auto picks it over any index list
    w = rng.normal(size=(12, 40)).astype(np.float32)
    net = compact_mlp([compact_layer(w, np.zeros(12), "identity")], 40, 12)
    path = save_bundle(net, tmp_path / "dense.npz")
    assert meta_of(read_arrays(path))["layers"][0]["indices"] == "bitmask"
    x = rng.random((3, 40)).astype(np.float32)
    assert np.abs(load(path)(x) - x @ w.T).max() < 1e-5


def test_float_arrays_are_byte_shuffled_where_that_compresses_better(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.1, size=(40, 50)).astype(np.float32)
    net = compact_mlp([compact_layer(w, rng.normal(size=40), "identity")], 50, 40)
    path = save_bundle(net, tmp_path / "f.npz")
    table = {e[0]: e for e in meta_of(read_arrays(path))["blob"]["arrays"]}
    assert table["layer1.data"][4:] == ["shuffle"]  # float32 weights: shuffled
    assert len(table["layer1.indices"]) == 4  # uint8 codes: never
    x = rng.random((3, 50)).astype(np.float32)
    assert np.abs(load(path)(x) - (x @ w.T + net.layers[0].bias)).max() < 1e-5


def test_unpacked_layout_is_still_written_on_request(tmp_path: Path) -> None:
    path = save_bundle(make_net(), tmp_path / "v2.npz", quantize="int8", packed=False)
    with zipfile.ZipFile(path) as zf:
        assert "layer1.qdata.npy" in zf.namelist() and "blob.npy" not in zf.namelist()
    with pytest.raises(ValueError, match="shared5 needs the packed layout"):
        bundle_arrays(make_net(), quantize="shared5", packed=False)
    with pytest.raises(ValueError, match="compression='lzma' needs the packed layout"):
        serialize(bundle_arrays(make_net(), packed=False), "lzma")


def test_packed_is_smaller_than_one_member_per_array(tmp_path: Path) -> None:
    for quantize in ("none", "int8"):
        packed = save_bundle(make_net(), tmp_path / "p.npz", quantize=quantize)
        members = save_bundle(make_net(), tmp_path / "m.npz", quantize=quantize, packed=False)
        assert packed.stat().st_size < members.stat().st_size / 2


# -- bundles written by earlier releases -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.npz")))
def test_old_bundles_still_load_and_compute_the_same(name: str) -> None:
    """Files written by the version-1/2 writer before version 3 existed (tests/fixtures)."""
    path = FIXTURES / f"{name}.npz"
    version = int(name[1])
    assert load(path).meta["version"] == version
    x = np.load(FIXTURES / "x.npy")
    np.testing.assert_allclose(load(path)(x), np.load(FIXTURES / f"{name}.out.npy"), atol=1e-6)
    with zipfile.ZipFile(path) as zf:
        assert "blob.npy" not in zf.namelist()


def test_fixtures_cover_both_old_versions() -> None:
    versions = {p.stem[:2] for p in FIXTURES.glob("*.npz")}
    assert versions == {"v1", "v2"}


# -- hostile packed bundles --------------------------------------------------------------------


@pytest.fixture
def logical(tmp_path: Path) -> Arrays:
    """The arrays of a packed int8 bundle with bitmask, delta8 and uint8 layers, unpacked."""
    arrays = read_arrays(save_bundle(make_net(), tmp_path / "q.npz", quantize="int8"))
    meta = meta_of(arrays)
    del meta["blob"]  # pack_arrays writes the table anew
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


def _write(tmp_path: Path, packed: Arrays) -> Path:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(zip_members(packed, "deflate"))
    return bad


def _refused(path: Path, expected: str) -> None:
    with pytest.raises(BundleError, match=re.escape(expected)) as info:
        read_bundle(path)  # what load() runs before it builds any kernel
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    with pytest.raises(BundleError):
        load(path)


def _table(fn: Callable[[dict], None]) -> Callable[[Arrays], Arrays]:
    """Edit meta.blob of a packed bundle."""
    def mutate(packed: Arrays) -> Arrays:
        meta = meta_of(packed)
        fn(meta["blob"])
        return {**packed, "meta": np.array(json.dumps(meta))}

    return mutate


def _entry(i: int, field: int, value) -> Callable[[Arrays], Arrays]:
    return _table(lambda blob: blob["arrays"][i].__setitem__(field, value))


def _blob(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Arrays], Arrays]:
    return lambda packed: {**packed, "blob": fn(packed["blob"].copy())}


def _as_v2(packed: Arrays) -> dict:
    meta = {**meta_of(packed), "version": 2}
    for entry in meta["layers"]:
        entry["indices"] = "uint8"  # a coding version 2 knows
    return meta


def _swap_first_two(blob: dict) -> None:
    blob["arrays"][0], blob["arrays"][1] = blob["arrays"][1], blob["arrays"][0]


CONTAINER: dict[str, tuple[Callable[[Arrays], Arrays], str]] = {
    "offset beyond the blob": (_entry(-1, 2, 10**6), "offset is 1000000, leaving a gap"),
    "overlapping arrays": (_entry(1, 2, 1), "overlapping the previous array (which ends at"),
    "gap between arrays": (_entry(1, 2, 1000), "leaving a gap after the previous array"),
    "out of order": (_table(_swap_first_two), "leaving a gap after the previous array"),
    "length past the end": (_entry(-1, 3, 10**6), "beyond the blob's"),
    "declared bytes too many": (_table(lambda b: b.__setitem__("bytes", b["bytes"] + 1)),
                                "meta.blob.bytes is"),
    "wrong dtype for qdata": (_entry(0, 1, "uint8"), "layer1.qdata has dtype uint8, expected int8"),
    "unknown dtype": (_entry(0, 1, "float64"), "dtype is 'float64', expected one of"),
    "shuffled int8": (_table(lambda b: b["arrays"][0].append("shuffle")),
                      "shuffles the bytes of a one-byte dtype (int8)"),
    "unknown fifth item": (_table(lambda b: b["arrays"][0].append("zstd")),
                           "must be [name, dtype, offset, length] or"),
    "object dtype": (_entry(0, 1, "O"), "dtype is 'O', expected one of"),
    "negative offset": (_entry(0, 2, -4), "offset must be >= 0"),
    "float length": (_entry(0, 3, 2.5), "length must be an integer"),
    "malformed entry": (_table(lambda b: b["arrays"].__setitem__(0, ["layer1.qdata", "int8"])),
                        "must be [name, dtype, offset, length]"),
    "duplicate name": (_entry(1, 0, "layer1.qdata"), "names an array a second time"),
    "table names meta": (_entry(0, 0, "meta"), "names a member, not an array"),
    "unknown array": (_entry(0, 0, "layer9.qdata"), "layer9.qdata is not part of a bundle"),
    "table not a list": (_table(lambda b: b.__setitem__("arrays", {})),
                         "meta.blob.arrays must be a list"),
    "truncated blob": (_blob(lambda a: a[:-5]), "blob has length"),
    "blob of int16": (_blob(lambda a: a[: len(a) // 2 * 2].view(np.int16)),
                      "blob has dtype int16, expected uint8"),
    "2-D blob": (_blob(lambda a: a[None, :]), "blob must be 1-D"),
    "missing blob": (lambda p: {"meta": p["meta"]}, "blob is missing"),
    "extra member": (lambda p: {**p, "layer1.bias": np.zeros(6, np.float32)},
                     "layer1.bias is a separate member, but a version-3 bundle packs"),
    "no table": (lambda p: {**p, "meta": np.array(json.dumps(
        {k: v for k, v in meta_of(p).items() if k != "blob"}))}, "meta.blob must be a JSON"),
    "blob in a version-2 bundle": (lambda p: {**p, "meta": np.array(json.dumps(_as_v2(p)))},
                                   "blob is not part of a bundle"),
}


@pytest.mark.parametrize("case", sorted(CONTAINER))
def test_hostile_containers_are_refused(logical: Arrays, tmp_path: Path, case: str) -> None:
    mutate, expected = CONTAINER[case]
    _refused(_write(tmp_path, mutate(pack_arrays(logical))), expected)


def _set(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Arrays], None]:
    return lambda arrays: arrays.__setitem__(name, fn(arrays[name].copy()))


def _layer_meta(k: int, key: str, value) -> Callable[[Arrays], None]:
    def mutate(arrays: Arrays) -> None:
        meta = meta_of(arrays)
        meta["layers"][k][key] = value
        arrays["meta"] = np.array(json.dumps(meta))

    return mutate


def _to_bitmask(k: int) -> Callable[[Arrays], None]:
    """Re-code layer k's indices as a bitmask (from its decoded CSR)."""
    def mutate(arrays: Arrays) -> None:
        layer = read_bundle_from(arrays).layers[k - 1]
        arrays[f"layer{k}.indices"] = encode_bitmask(layer.indices, layer.indptr, *layer.shape)
        _layer_meta(k - 1, "indices", "bitmask")(arrays)

    return mutate


def read_bundle_from(arrays: Arrays):
    from edgeprune.runtime.bundle import validate_bundle

    return validate_bundle(arrays)


def _then(*steps: Callable[[Arrays], None]) -> Callable[[Arrays], None]:
    def mutate(arrays: Arrays) -> None:
        for step in steps:
            step(arrays)

    return mutate


def _last_bit(arr: np.ndarray) -> np.ndarray:
    arr[-1] |= 1  # layer 1 is 6 x 9 = 54 bits: bits 54..55 are padding
    return arr


def _move_bit(arr: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(arr)
    first, second = np.flatnonzero(bits[:9])[0], 9 + np.flatnonzero(bits[9:18] == 0)[0]
    bits[first], bits[second] = 0, 1  # one position moves from row 0 to row 1
    return np.packbits(bits)


ARRAYS: dict[str, tuple[Callable[[Arrays], None], str]] = {
    "bitmask padding bits": (_then(_to_bitmask(1), _set("layer1.indices", _last_bit)),
                             "layer1.indices sets padding bits beyond the 6 x 9"),
    "bitmask rows disagree with rowlen": (
        _then(_to_bitmask(1), _set("layer1.indices", _move_bit)),
        "positions in row 0 but layer1.rowlen says"),
    "bitmask too long": (_then(_to_bitmask(1), _set("layer1.indices",
                                                    lambda a: np.append(a, np.uint8(0)))),
                         "layer1.indices has length 8, expected at most 7"),
    "bitmask too short": (_then(_to_bitmask(1), _set("layer1.indices", lambda a: a[:-1])),
                          "layer1.indices has length 6, expected 7"),
    "input_index as int64": (_set("input_index", lambda a: a.astype(np.int64)),
                             "input_index has dtype int64, expected uint8"),
    "input_index out of range": (_set("input_index", lambda a: np.where(a == 9, 200, a)),
                                 "input_index has index 200"),
    "qdata -128": (_set("layer2.qdata", lambda a: np.full_like(a, -128)),
                   "layer2.qdata holds -128 at position 0"),
    "zero scale": (_set("layer1.scale", lambda a: np.zeros_like(a)), "layer1.scale holds 0.0"),
    "nan bias": (_set("layer3.bias", lambda a: np.full_like(a, np.nan)),
                 "layer3.bias holds a non-finite value"),
    "rowlen sum": (_set("layer4.rowlen", lambda a: a * 0), "layer4.rowlen sums to 0"),
}


@pytest.mark.parametrize("case", sorted(ARRAYS))
def test_hostile_packed_arrays_are_refused(logical: Arrays, tmp_path: Path, case: str) -> None:
    mutate, expected = ARRAYS[case]
    mutate(logical)
    _refused(_write(tmp_path, pack_arrays(logical)), expected)


def test_hostile_shared_codebooks_are_refused(tmp_path: Path) -> None:
    arrays = read_arrays(save_bundle(make_net(), tmp_path / "s.npz", quantize="shared5"))
    meta = meta_of(arrays)
    del meta["blob"]
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["layer1.codebook"] = np.linspace(-1, 1, 33).astype(np.float32)
    _refused(_write(tmp_path, pack_arrays(arrays)), "layer1.codebook has length 33, expected at "
                                                    "most 32")


def test_version_3_codings_are_refused_in_version_2(tmp_path: Path) -> None:
    arrays = bundle_arrays(make_net(), quantize="int8", packed=False)
    meta = meta_of(arrays)
    meta["layers"][0]["indices"] = "bitmask"
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "bad.npz", **arrays)
    _refused(tmp_path / "bad.npz", "meta.layers[1].indices is 'bitmask', a version-3 coding in "
                                   "a version-2 bundle")


def test_oversized_arrays_are_refused_before_the_blob_is_read(
        logical: Arrays, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An array longer than meta allows fails on the table alone: nothing is cut out of the
    blob (and with a blob bomb, nothing decompressed)."""
    import edgeprune.runtime.bundle as bundle_module

    logical["layer1.qdata"] = np.zeros(10_000, np.int8)
    bad = _write(tmp_path, pack_arrays(logical))

    def never(*args, **kwargs):
        raise AssertionError("the blob was read")

    monkeypatch.setattr(bundle_module, "unpack_blob", never)
    _refused(bad, "layer1.qdata has length 10000, expected at most 35")


def test_truncated_and_damaged_lzma_files(tmp_path: Path) -> None:
    path = save_bundle(make_net(), tmp_path / "l.npz", quantize="int8", compression="lzma")
    raw = path.read_bytes()
    for size in (len(raw) // 2, len(raw) - 30):
        cut = tmp_path / f"cut{size}.npz"
        cut.write_bytes(raw[:size])
        _refused(cut, "is truncated")
    damaged = bytearray(raw)
    start = raw.index(b"blob.npy") + len(b"blob.npy") + 40
    damaged[start:start + 16] = bytes(b ^ 0x5A for b in damaged[start:start + 16])
    bad = tmp_path / "damaged.npz"
    bad.write_bytes(bytes(damaged))
    _refused(bad, "blob")


def test_gib_blob_is_refused_from_its_header(tmp_path: Path) -> None:
    """A packed bundle whose blob member inflates to 1 GiB of zeros (its .npy header declaring
    2**30 bytes, meta.blob.bytes the true few hundred) is refused before the blob is read."""
    from tests.test_hostile_inputs import GiB, _npy_header, _read_in_subprocess

    good = save_bundle(make_net(), tmp_path / "good.npz", quantize="int8")
    with zipfile.ZipFile(good) as zf:
        meta = zf.read("meta.npy")
    bomb = tmp_path / "bomb.npz"
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("meta.npy", meta)
        with zf.open("blob.npy", "w", force_zip64=True) as fh:
            fh.write(_npy_header((GiB,), "|u1"))
            for _ in range(GiB // len(chunk)):
                fh.write(chunk)
    assert bomb.stat().st_size < 8 * 1024**2
    verdict, peak = _read_in_subprocess(bomb)
    assert verdict.startswith("REFUSED") and f"blob has length {GiB}, expected" in verdict
    assert peak < 300 * 1024**2, f"peak RSS {peak / 1024**2:.0f} MiB"
