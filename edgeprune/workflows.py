"""Small end-to-end library functions behind ``train`` and ``run`` (no click here; ``info`` is
:mod:`edgeprune.inspector`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeprune.errors import first_line
from edgeprune.fileio import atomic_path
from edgeprune.network import ModelError
from edgeprune.output_dir import check_output_file


def train_autoencoder(data_spec: str, *, hidden: str = "32,8", activation: str = "relu",
                      latent_activation: str | None = None, output_activation: str = "sigmoid",
                      epochs: int = 20, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                      output: str | os.PathLike = "model.pt", quiet: bool = False) -> str:
    """Train a symmetric autoencoder on ``data_spec`` and save it; returns a summary line."""
    from edgeprune.checkpoint import save_checkpoint
    from edgeprune.data import load_dataset
    from edgeprune.network import parse_activations
    from edgeprune.train import build_autoencoder, evaluate, parse_hidden, train_network

    sizes = parse_hidden(hidden)
    activation = parse_activations(activation, 1)[0]
    output_activation = parse_activations(output_activation, 1)[0]
    if latent_activation is not None:
        latent_activation = parse_activations(latent_activation, 1)[0]
    ds = load_dataset(data_spec, seed=seed)
    net = build_autoencoder(ds.dim, sizes, activation, output_activation, latent_activation, seed)
    net, history = train_network(net, ds.x_train, ds.x_val, epochs=epochs, lr=lr,
                                 batch_size=batch_size, seed=seed, quiet=quiet)
    metrics = evaluate(net, ds, seed)
    net.meta = {"trained_on": ds.name, "epochs": epochs, "seed": seed, "lr": lr,
                "test_metrics": metrics, "history": history[-1:] if history else []}
    save_checkpoint(net, output)
    parts = [f"{k}={v:.5g}" for k, v in metrics.items()]
    return f"trained {net.describe()} on {ds.name}: {', '.join(parts)}; wrote {output}"


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, arr)


def read_samples(path: str | os.PathLike, width: int, widths: list[int] | None = None,
                 what: str = "inputs") -> np.ndarray:
    """The samples of the ``.npy`` file ``path`` as float32 ``(samples, width)``, every check of
    ``edgeprune run`` first (header, shape, size bound, finite values)."""
    x = _read_inputs(Path(path), width, what, widths or [width])
    return x.reshape(-1, width)


def _read_inputs(path: Path, width: int, what: str, widths: list[int]) -> np.ndarray:
    """The samples in the .npy ``path`` as float32, checked from the header first, then finite."""
    from edgeprune.runtime import limits

    fix = f"save them with np.save from a float array of shape (samples, {width})"
    try:
        header = limits.check_npy_file(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such input file; give a .npy array of samples") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory; give a .npy array of samples") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the inputs ({exc.strerror or exc})") from None
    except ValueError as exc:
        if "zip archive" in str(exc):
            fix = "give one array saved with np.save (e.g. np.save('x.npy', np.load(f)['x']))"
        raise ModelError(f"{path}: {exc}; {fix}") from None
    if header.dtype.kind not in "fiub":
        raise ModelError(f"{path}: dtype {header.dtype} is not numeric; save a float32 array")
    shape = header.shape
    if len(shape) not in (1, 2):
        raise ModelError(f"{path}: array has shape {shape} ({len(shape)}-D); give samples as "
                         f"(samples, {width}) or one sample as ({width},), e.g. "
                         "x.reshape(len(x), -1)")
    if shape[-1] != width:
        raise ModelError(f"{path}: samples have {shape[-1]} features but the model reads {width} "
                         f"({what}); give an array of shape (samples, {width})")
    n = shape[0] if len(shape) == 2 else 1
    need = limits.run_bytes(n, widths)
    if need > limits.MAX_RUN_BYTES:
        raise ModelError(f"{path}: {n} samples need {limits.format_bytes(need)} of float32 "
                         f"buffers, over the bound of {limits.format_bytes(limits.MAX_RUN_BYTES)} "
                         "(edgeprune.runtime.limits.MAX_RUN_BYTES); split them into files of at "
                         f"most {limits.max_batch(widths)} samples")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(f"{path}: cannot read the array ({first_line(exc)}); "
                         f"{fix}") from None
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = x.astype(np.float32, copy=False)
    bad = ~np.isfinite(x32)
    if bad.any():
        pos = np.unravel_index(int(np.argmax(bad)), bad.shape)
        where = f"row {pos[0]}, column {pos[1]}" if len(pos) == 2 else f"position {pos[0]}"
        raise ModelError(f"{path}: value {float(x[pos])!r} at {where} is NaN, inf or beyond "
                         "the float32 range; a model run on such inputs gives no result, so "
                         "clean or impute them first")
    return x32


def run_bundle(bundle: str | os.PathLike, inputs: str | os.PathLike, output: str | os.PathLike,
               *, kernel: str = "auto", mode: str = "forward",
               engine: str = "numpy") -> tuple[int, ...]:
    """Run ``bundle`` on the samples in ``inputs`` (.npy) and write the result to ``output``.

    Everything is checked before the model runs: ``output`` may not be the bundle or the inputs;
    the inputs' .npy header (dtype, 1-D or 2-D, feature count, size within the runtime's bounds)
    is read before the array is; NaN/inf values (also float64 values beyond float32) are refused.
    """
    from edgeprune import runtime

    bundle, inputs, output = Path(bundle), Path(inputs), Path(output)
    check_output_file(output, {"model bundle": bundle, "input file": inputs})
    model = runtime.load(bundle, kernel=kernel, engine=engine)
    if mode != "forward" and not model.is_autoencoder:
        raise ModelError(f"{bundle}: --{mode} needs an autoencoder bundle with a latent layer; "
                         f"this one is {model.kind!r} without one")
    width, what = ((model.latent_dim or 0), "latent units") if mode == "decode" else (
        model.input_dim, "inputs")
    x = _read_inputs(inputs, width, what, model.buffer_widths(mode))
    fn = {"forward": model, "encode": model.encode, "decode": model.decode}[mode]
    y = fn(x)
    _save_npy_atomic(output, y)
    return tuple(y.shape)


def run_shapnet_bundle(bundle: str | os.PathLike, inputs: str | os.PathLike,
                       output: str | os.PathLike, *, explanations: str | os.PathLike | None = None,
                       skip_threshold: float | None = None, kernel: str = "csr",
                       engine: str = "numpy") -> dict:
    """``edgeprune run`` on a ShapNet bundle: the prediction to ``output``, the per-feature
    explanation ``(samples, features, outputs)`` to ``explanations`` (when given); with
    ``skip_threshold`` the modules within it of their reference are skipped (dynamic pruning).
    Returns the shapes written, the fraction of modules skipped and the threshold's bound."""
    from edgeprune.runtime.bundle import read_bundle
    from edgeprune.runtime.shapnet import ShapNetModel, check_skip_threshold

    threshold = check_skip_threshold(skip_threshold, "--skip-threshold")
    bundle, inputs, output = Path(bundle), Path(inputs), Path(output)
    reads = {"model bundle": bundle, "input file": inputs}
    check_output_file(output, reads)
    if explanations is not None:
        explanations = Path(explanations)
        check_output_file(explanations, {**reads, "prediction output (-o)": output},
                          "--explanations")
    loaded = read_bundle(bundle)
    if loaded.shapnet is None:
        raise ModelError(f"{bundle}: --skip-threshold and --explanations need a ShapNet bundle "
                         f"(edgeprune export of a ShapNet model); this one is {loaded.kind!r}")
    model = ShapNetModel(loaded, kernel=kernel, engine=engine)
    x = _read_inputs(inputs, model.input_dim, "inputs", model.chain.buffer_widths())
    result = model.run(x, threshold)
    _save_npy_atomic(output, result.prediction)
    if explanations is not None:
        _save_npy_atomic(explanations, result.explanation)
    summary = {"prediction": tuple(result.prediction.shape),
               "explanation": tuple(result.explanation.shape) if explanations else None,
               "skip_threshold": threshold, "modules": model.n_modules}
    if threshold is not None:
        summary["skipped_fraction"] = result.skipped_fraction
        summary["bound"] = float(model.skip_bound(threshold)[0].max())
    return summary
