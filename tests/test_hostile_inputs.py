"""Hostile and malformed inputs (issue 19): bombs, garbage data and crashing reads.

Every bad file is built here, at test time, in ``tmp_path``. Each case is checked through the
library (the named one-line exception) and, where a command reads it, through the CLI: non-zero
exit, exactly one ``Error:`` line naming the file or option, no traceback, no output written.
The decompression bombs are read in a subprocess whose peak RSS is asserted.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.cli import main
from edgeprune.data import DataError, load_dataset
from edgeprune.errors import EdgepruneError
from edgeprune.network import ModelError
from edgeprune.runtime import BundleError, limits, load, read_bundle
from edgeprune.scoring import memory_budget_bytes, score_network
from edgeprune.workflows import run_bundle

GiB = 1024**3


# -- builders ---------------------------------------------------------------------------------
def _meta(**over) -> dict:
    meta = {"format": "edgeprune-csr", "version": 1, "kind": "mlp", "input_dim": 4,
            "output_dim": 3, "layers": [{"activation": "identity", "negative_slope": 0.0,
                                         "shape": [3, 4], "nnz": 12}]}
    meta.update(over)
    return meta


def _arrays(meta: dict | None = None) -> dict[str, np.ndarray]:
    """A valid 4 -> 3 identity MLP bundle (dense 3x4 weight stored as CSR)."""
    weight = (np.arange(12, dtype=np.float32).reshape(3, 4) + 1) / 10
    return {
        "meta": np.array(json.dumps(meta or _meta())),
        "layer1.data": weight.ravel(),
        "layer1.indices": np.tile(np.arange(4, dtype=np.int32), 3),
        "layer1.indptr": np.array([0, 4, 8, 12], dtype=np.int32),
        "layer1.bias": np.zeros(3, dtype=np.float32),
        "input_index": np.arange(4, dtype=np.int64),
        "output_index": np.arange(3, dtype=np.int64),
        "output_const": np.zeros(3, dtype=np.float32),
    }


def _bundle(path: Path, meta: dict | None = None) -> Path:
    np.savez(path, **_arrays(meta))
    return path


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _bundle_members() -> dict[str, bytes]:
    return {f"{k}.npy": _npy_bytes(v) for k, v in _arrays().items()}


def _declare_size(path: Path, member: str, size: int) -> None:
    """Make the central directory declare ``size`` uncompressed bytes for ``member``."""
    raw = bytearray(path.read_bytes())
    pos = raw.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = int.from_bytes(raw[pos + 28:pos + 30], "little")
        if raw[pos + 46:pos + 46 + name_len] == member.encode():
            raw[pos + 24:pos + 28] = size.to_bytes(4, "little")
            path.write_bytes(bytes(raw))
            return
        pos = raw.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(f"{member} not in the central directory")


@pytest.fixture(scope="module")
def gib_bomb(tmp_path_factory) -> Path:
    """A ~5 MB bundle whose ``layer1.data`` member (a valid .npy header declaring 2**28 float32)
    inflates to 1 GiB of zeros; written streamed, so building it takes no memory."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    members = _bundle_members()
    del members["layer1.data.npy"]
    chunk = bytes(1 << 20)
    header = _npy_header((GiB // 4,))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        with zf.open("layer1.data.npy", "w", force_zip64=True) as fh:
            fh.write(header)
            for _ in range(GiB // len(chunk)):
                fh.write(chunk)
    assert path.stat().st_size < 8 * 1024**2
    return path


# Peak RSS of this process alone: VmHWM belongs to the address space exec() made, whereas
# ru_maxrss also carries the (large) pytest parent's RSS across fork + exec on Linux.
_PEAK = """
import resource, sys
from edgeprune.runtime import BundleError, read_bundle
try:
    read_bundle(sys.argv[1])
    print("ACCEPTED")
except BundleError as exc:
    print("REFUSED", exc)
try:
    with open("/proc/self/status") as fh:
        print(next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) * 1024)
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def _read_in_subprocess(path: Path) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True,
                         text=True, timeout=120, check=True).stdout.strip().splitlines()
    return out[0], int(out[-1])


# -- CLI helpers --------------------------------------------------------------------------------
def _cli_fails(args: list[str], *needles: str, absent: tuple[Path, ...] = ()) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    out = result.output.strip()
    assert result.exit_code != 0, out
    assert "Traceback" not in out and "unexpected" not in out, out
    assert len(out.splitlines()) == 1 and out.startswith("Error: "), out
    for needle in needles:
        assert str(needle) in out, out
    for path in absent:
        assert not path.exists(), f"{path} was written"
    return out


@pytest.fixture
def inputs(tmp_path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((5, 4), dtype=np.float32))
    return path


# == A. bundle bombs and declared sizes ===========================================================
def test_gib_member_with_a_bundle_name_is_refused_from_its_header(gib_bomb):
    verdict, peak = _read_in_subprocess(gib_bomb)
    assert verdict.startswith("REFUSED") and "layer1.data has length 268435456" in verdict
    assert peak < 300 * 1024**2, f"peak RSS {peak / 1024**2:.0f} MiB"


def test_gib_extra_member_is_refused_by_name(gib_bomb, tmp_path):
    extra = tmp_path / "extra.npz"  # same archive, the bomb renamed (same length, same CRC)
    extra.write_bytes(gib_bomb.read_bytes().replace(b"layer1.data.npy", b"../x/extra1.npy"))
    verdict, peak = _read_in_subprocess(extra)
    assert verdict.startswith("REFUSED") and "'../x/extra1.npy' is not an array" in verdict
    assert peak < 300 * 1024**2, f"peak RSS {peak / 1024**2:.0f} MiB"


def test_bomb_through_the_cli(gib_bomb, tmp_path, inputs):
    out = tmp_path / "y.npy"
    _cli_fails(["run", gib_bomb, inputs, "-o", out], str(gib_bomb), "layer1.data", absent=(out,))
    _cli_fails(["info", gib_bomb], str(gib_bomb), "layer1.data")


@pytest.mark.parametrize("name", ["../meta.npy", "/abs.npy", "dir/layer1.data.npy", "x.npy",
                                  "layer0.data.npy", "meta", "layer1.data.npy.npy"])
def test_member_names_outside_a_bundle_are_refused(tmp_path, name):
    path = _zip(tmp_path / "b.npz", {**_bundle_members(), name: _npy_bytes(np.zeros(1))})
    with pytest.raises(BundleError, match="is not an array a bundle holds"):
        read_bundle(path)


def test_duplicate_member_is_refused(tmp_path):
    path = tmp_path / "b.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it writes
        _zip(path, _bundle_members())
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("layer1.bias.npy", _npy_bytes(np.zeros(3, np.float32)))
    with pytest.raises(BundleError, match="appears twice"):
        read_bundle(path)


def test_too_many_members(tmp_path):
    members = _bundle_members()
    members.update({f"layer{k}.{part}.npy": b"" for k in range(2, 3 + 2 * limits.MAX_LAYERS)
                    for part in ("qdata", "scale", "indices", "rowlen", "bias")})
    with pytest.raises(BundleError, match=rf"holds {len(members)} members, more than a bundle"):
        read_bundle(_zip(tmp_path / "b.npz", members))


def test_declared_uncompressed_size_over_the_bound(tmp_path, inputs):
    path = _zip(tmp_path / "b.npz", _bundle_members())
    _declare_size(path, "layer1.bias.npy", 3 * GiB)
    with pytest.raises(BundleError, match=r"over the bound of 2 GiB .*MAX_BUNDLE_BYTES"):
        read_bundle(path)
    out = tmp_path / "y.npy"
    _cli_fails(["run", path, inputs, "-o", out], "MAX_BUNDLE_BYTES", absent=(out,))


def test_npy_header_declaring_more_than_its_member_holds(tmp_path):
    members = _bundle_members()
    members["layer1.data.npy"] = _npy_header((2**40,)) + bytes(48)
    path = _zip(tmp_path / "b.npz", members)
    with pytest.raises(BundleError, match=r"layer1\.data declares shape \(1099511627776,\)"):
        read_bundle(path)


def test_object_member_refused_from_its_header(tmp_path):
    members = _bundle_members()
    members["layer1.bias.npy"] = _npy_bytes(np.array([1, "x", None], dtype=object))
    path = _zip(tmp_path / "b.npz", members)
    with pytest.raises(BundleError, match="layer1.bias is a pickled object array"):
        read_bundle(path)


@pytest.mark.parametrize("over,needle", [
    ({"input_dim": 2**40}, "meta.input_dim is 1099511627776, over the bound"),
    ({"output_dim": 2**40}, "meta.output_dim is 1099511627776, over the bound"),
    ({"latent_layer": 1, "latent_dim": 2**40}, "meta.latent_dim is 1099511627776"),
    ({"layers": [{"activation": "relu", "negative_slope": 0.0, "shape": [2**40, 4],
                  "nnz": 12}]}, "meta.layers[1].shape[0] is 1099511627776"),
    ({"layers": [{"activation": "relu", "negative_slope": 0.0, "shape": [2**20, 2**20],
                  "nnz": 12}]}, "MAX_LAYER_ELEMENTS"),
    ({"layers": [{"activation": "relu", "negative_slope": 0.0, "shape": [3, 4], "nnz": 1}]
      * 5000}, "declares 5000 layers"),
])
def test_tib_meta_dims_are_refused(tmp_path, inputs, over, needle):
    path = _bundle(tmp_path / "b.npz", _meta(**over))
    with pytest.raises(BundleError, match=None) as info:
        read_bundle(path)
    assert needle in str(info.value) and "\n" not in str(info.value)
    out = tmp_path / "y.npy"
    _cli_fails(["run", path, inputs, "-o", out], needle, absent=(out,))


def test_member_longer_than_meta_allows(tmp_path):
    arrays = _arrays()
    arrays["output_const"] = np.zeros(10**6, dtype=np.float32)
    np.savez_compressed(tmp_path / "b.npz", **arrays)
    with pytest.raises(BundleError, match="output_const has length 1000000, expected 3"):
        read_bundle(tmp_path / "b.npz")


def test_valid_bundle_still_runs(tmp_path, inputs):
    model = load(_bundle(tmp_path / "b.npz"))
    x = np.load(inputs)
    assert np.allclose(model(x), x @ model.bundle.layers[0].data.reshape(3, 4).T, atol=1e-6)


# == B. run inputs ============================================================================
def _run_fails(tmp_path, x_path, needle, exc=ModelError):
    bundle = _bundle(tmp_path / "m.npz")
    out = tmp_path / "y.npy"
    with pytest.raises(exc) as info:
        run_bundle(bundle, x_path, out)
    text = str(info.value)
    assert str(x_path) in text and needle in text and "\n" not in text, text
    _cli_fails(["run", bundle, x_path, "-o", out], str(x_path), needle, absent=(out,))


def test_run_empty_npy(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"")
    _run_fails(tmp_path, tmp_path / "x.npy", "is empty (0 bytes)")


def test_run_npz_given_as_npy(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 4)))
    (tmp_path / "x.npz").rename(tmp_path / "x.npy")
    _run_fails(tmp_path, tmp_path / "x.npy", "is a zip archive (.npz)")


def test_run_pickled_npy(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[1, 2, 3, None]], dtype=object), allow_pickle=True)
    _run_fails(tmp_path, tmp_path / "x.npy", "pickled Python objects")


def test_run_not_npy(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"garbage bytes, not numpy")
    _run_fails(tmp_path, tmp_path / "x.npy", "is not a .npy file")


@pytest.mark.parametrize("arr,needle", [
    (np.zeros((2, 5), np.float32), "samples have 5 features but the model reads 4"),
    (np.zeros((2, 3, 4), np.float32), "(3-D)"),
    (np.zeros((2, 4), np.complex64), "is not numeric"),
    (np.array([["a", "b", "c", "d"]]), "is not numeric"),
])
def test_run_wrong_shape_or_dtype(tmp_path, arr, needle):
    np.save(tmp_path / "x.npy", arr)
    _run_fails(tmp_path, tmp_path / "x.npy", needle)


def test_run_header_declaring_more_than_the_file_holds(tmp_path):
    (tmp_path / "x.npy").write_bytes(_npy_header((10**12, 4)) + bytes(64))
    _run_fails(tmp_path, tmp_path / "x.npy", "truncated or corrupt")


def test_run_header_over_the_array_bound(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.zeros((300, 4), np.float32))
    monkeypatch.setattr(limits, "MAX_ARRAY_BYTES", 1024)
    _run_fails(tmp_path, tmp_path / "x.npy", "MAX_ARRAY_BYTES")


def test_run_batch_over_the_buffer_bound(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.zeros((300, 4), np.float32))
    monkeypatch.setattr(limits, "MAX_RUN_BYTES", 4096)
    _run_fails(tmp_path, tmp_path / "x.npy", "split them into files of at most 93 samples")
    model = load(_bundle(tmp_path / "m.npz"))
    assert model.buffer_widths() == [5, 3, 3]  # the input with its row of ones, layer, result
    with pytest.raises(limits.LimitError, match="batches of at most 93 samples"):
        model(np.zeros((300, 4), np.float32))
    assert model(np.zeros((93, 4), np.float32)).shape == (93, 3)


@pytest.mark.parametrize("value,where", [(np.nan, "value nan at row 1, column 2"),
                                         (np.inf, "value inf at row 1, column 2"),
                                         (1e300, "value 1e+300 at row 1, column 2")])
def test_run_non_finite_inputs_are_refused(tmp_path, value, where):
    x = np.ones((3, 4))
    x[1, 2] = value
    np.save(tmp_path / "x.npy", x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run_fails(tmp_path, tmp_path / "x.npy", where)


def test_run_decode_needs_an_autoencoder(tmp_path, inputs):
    bundle = _bundle(tmp_path / "m.npz")
    with pytest.raises(ModelError, match="--decode needs an autoencoder"):
        run_bundle(bundle, inputs, tmp_path / "y.npy", mode="decode")


@pytest.mark.parametrize("target", ["bundle", "inputs", "link"])
def test_run_does_not_replace_what_it_reads(tmp_path, inputs, target):
    bundle = _bundle(tmp_path / "m.npz")
    link = tmp_path / "alias.npz"
    link.symlink_to(bundle)
    out = {"bundle": bundle, "inputs": inputs, "link": link}[target]
    before = bundle.read_bytes(), inputs.read_bytes()
    with pytest.raises(EdgepruneError, match="this command reads"):
        run_bundle(bundle, inputs, out)
    _cli_fails(["run", bundle, inputs, "-o", out], f"-o {out}", "this command reads")
    assert (bundle.read_bytes(), inputs.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.npz", "m.npz", "x.npy"]


# == C. data ==================================================================================
def _data_fails(spec: str, needle: str, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing from numpy/sklearn may reach the console
        with pytest.raises(DataError) as info:
            load_dataset(spec)
    text = str(info.value)
    assert needle in text and "\n" not in text, text
    model = tmp_path / "model.pt"
    _cli_fails(["train", "--data", spec, "--epochs", "1", "-q", "-o", model],
               spec.partition(":")[2], needle,
               absent=(model,))


def test_data_beyond_float32_is_refused(tmp_path):
    x = np.ones((20, 3))
    x[4, 1] = 1e39
    np.save(tmp_path / "big.npy", x)
    _data_fails(f"npy:{tmp_path / 'big.npy'}", "the first 1e+39 at row 4, column 1", tmp_path)


def test_data_csv_beyond_float32(tmp_path):
    (tmp_path / "big.csv").write_text("1,2\n3,-4e38\n5,6\n")
    _data_fails(f"csv:{tmp_path / 'big.csv'}", "beyond the float32 range", tmp_path)


def test_csv_with_bom_keeps_its_first_row(tmp_path):
    rows = np.arange(30, dtype=np.float64).reshape(10, 3)
    body = "\n".join(",".join(f"{v:g}" for v in row) for row in rows) + "\n"
    (tmp_path / "bom.csv").write_bytes("\ufeff".encode() + body.encode())
    ds = load_dataset(f"csv:{tmp_path / 'bom.csv'}", val_fraction=0, test_fraction=0)
    assert ds.feature_names is None and len(ds.x_train) == 10
    assert sorted(ds.x_train[:, 0].tolist()) == rows[:, 0].tolist()
    (tmp_path / "bomh.csv").write_bytes("\ufeffa,b,c\n".encode() + body.encode())
    ds = load_dataset(f"csv:{tmp_path / 'bomh.csv'}")
    assert ds.feature_names == ("a", "b", "c")


def _idx(path: Path, dims: tuple[int, ...], data: bytes, magic: int = 0x803) -> Path:
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(head + data)
    return path


def test_idx_dims_overflowing_the_bound(tmp_path):
    path = _idx(tmp_path / "huge-idx3-ubyte", (2**32 - 1, 2**32 - 1, 2**32 - 1), bytes(100))
    _data_fails(f"idx:{path}", "over the bound", tmp_path)


def test_idx_dims_beyond_the_file(tmp_path):
    path = _idx(tmp_path / "short-idx3-ubyte", (1000, 28, 28), bytes(100))
    _data_fails(f"idx:{path}", "holds 100 data bytes but header dims (1000, 28, 28)", tmp_path)


def test_gzipped_idx_bomb_is_not_decompressed(tmp_path):
    import gzip

    head = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (10, 28, 28))
    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(head)
        for _ in range(64):
            fh.write(bytes(1 << 20))  # 64 MiB behind a header declaring 7840 bytes
    _data_fails(f"idx:{path}", "holds 7841+ data bytes", tmp_path)


def test_data_empty_npy(tmp_path):
    (tmp_path / "e.npy").write_bytes(b"")
    _data_fails(f"npy:{tmp_path / 'e.npy'}", "is empty (0 bytes)", tmp_path)


def test_data_pickled_npy(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    _data_fails(f"npy:{tmp_path / 'o.npy'}", "pickled Python objects", tmp_path)


def test_data_npy_header_beyond_the_file(tmp_path):
    (tmp_path / "h.npy").write_bytes(_npy_header((10**6, 10**6)) + bytes(80))
    _data_fails(f"npy:{tmp_path / 'h.npy'}", "truncated or corrupt", tmp_path)


def test_data_npz_as_npy(tmp_path):
    path = tmp_path / "d.npy"
    with path.open("wb") as fh:
        np.savez(fh, x=np.ones((20, 3)), y=np.arange(20) % 2)
    assert load_dataset(f"npy:{path}").dim == 3  # an .npz with key x is a valid npy: dataset
    with path.open("wb") as fh:
        np.savez(fh, data=np.ones((20, 3)))
    _data_fails(f"npy:{path}", "no 'x'", tmp_path)


def test_data_npz_member_declared_over_the_bound(tmp_path):
    path = _zip(tmp_path / "d.npz", {"x.npy": _npy_bytes(np.ones((20, 3)))})
    _declare_size(path, "x.npy", 3 * GiB)
    _data_fails(f"npy:{path}", "MAX_ARRAY_BYTES", tmp_path)


def test_data_nan_labels(tmp_path):
    y = np.zeros(20)
    y[3] = np.nan
    np.savez(tmp_path / "d.npz", x=np.ones((20, 3)), y=y)
    _data_fails(f"npy:{tmp_path / 'd.npz'}", "labels hold NaN", tmp_path)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_data_too_small_for_its_splits(tmp_path, n):
    np.save(tmp_path / "few.npy", np.random.default_rng(0).random((n, 4)))
    _data_fails(f"npy:{tmp_path / 'few.npy'}", "supply at least 6 samples", tmp_path)


# == D. --memory-budget ========================================================================
@pytest.mark.parametrize("gb", [0, -1, math.inf, math.nan, 2048, 1e-15])
def test_memory_budget_is_validated(gb):
    with pytest.raises(ModelError, match="--memory-budget") as info:
        memory_budget_bytes(gb)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="--memory-budget"):
        score_network(None, np.zeros((2, 2)), memory_budget=gb * GiB)  # type: ignore[arg-type]


def test_memory_budget_accepts_sane_values():
    assert memory_budget_bytes(2) == 2 * GiB
    assert memory_budget_bytes(0.5) == GiB // 2
    assert memory_budget_bytes(limits.MAX_MEMORY_BUDGET_GB) == limits.MAX_MEMORY_BUDGET_GB * GiB


@pytest.mark.parametrize("gb", ["0", "-1"])
def test_memory_budget_through_the_cli(tmp_path, gb, small_model, npy_data):
    scores = tmp_path / "s.npz"
    _cli_fails(["score", small_model, "--data", npy_data, "--memory-budget", gb, "-q",
                "-o", scores], "--memory-budget", absent=(scores,))


# == E. batch sizes ============================================================================
def test_check_batch_sizes():
    assert limits.check_batch_sizes([1, 64, np.int64(1000)], 784) == [1, 64, 1000]
    for bad in (0, -3, True, 2.5, "8"):
        with pytest.raises(limits.LimitError, match="--batch .*integer >= 1"):
            limits.check_batch_sizes([bad], 784)
    with pytest.raises(limits.LimitError) as info:
        limits.check_batch_sizes([1, 10**12], 784)
    text = str(info.value)
    fits = limits.MAX_RUN_BYTES // (4 * 784)
    assert text.startswith("--batch 1000000000000:") and f"--batch {fits} or less" in text
    assert limits.check_batch_sizes([fits], 784) == [fits]
    with pytest.raises(limits.LimitError, match="--batches 1000"):
        limits.check_batch_sizes([1000], 784, widths=[10**6], option="--batches")


def test_model_buffer_widths_feed_check_batch_sizes(tmp_path):
    model = load(_bundle(tmp_path / "m.npz"))
    fits = limits.MAX_RUN_BYTES // (4 * (4 + sum(model.buffer_widths())))
    assert limits.check_batch_sizes([fits], model.input_dim, widths=model.buffer_widths())
    with pytest.raises(limits.LimitError):
        limits.check_batch_sizes([fits + 1], model.input_dim, widths=model.buffer_widths())
