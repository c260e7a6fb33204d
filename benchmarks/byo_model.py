"""Bring your own model: the MLPerf Tiny anomaly-detection autoencoder, compressed at η = 0.9.

The model is the MLPerf Tiny AD autoencoder's shape, written in plain PyTorch as a user would:
640 inputs, 4 x [Linear(128) + BatchNorm1d + ReLU], Linear(8) + BN + ReLU, mirrored, Linear(640).
It is trained here (BN in training mode), saved as a plain ``state_dict``, and handed to
edgeprune exactly as a user would (``--activations relu,...,identity``): the nine BatchNorms are
folded, the narrowest layer is taken as the latent, SHAP-SAE prunes to η = 0.9 with 5 epochs of
fine-tuning, and size and latency are measured for the unpruned and the pruned model.

Data: **synthetic** machine-sound-like features, because the ToyADMOS/MIMII recordings MLPerf
Tiny uses are not available offline: 5 frames x 128 log-mel bins of a machine's spectrum (a few
harmonic peaks whose frequencies, widths and levels are drawn per machine, a slowly drifting
level across frames, log-compressed, plus noise), scaled to [0, 1]. It stands in for the real
features in shape and smoothness only; the accuracy figures are about this data.

    python benchmarks/byo_model.py            # ~ a few minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeprune.bench import BenchOptions
from edgeprune.bench import run as run_bench
from edgeprune.checkpoint import load_network
from edgeprune.compress import CompressOptions, compress
from edgeprune.data import load_dataset
from edgeprune.fileio import write_text_atomic

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
OUT = HERE / "results" / "byo_model"
FRAMES, MELS = 5, 128


def machine_features(n: int = 4000, seed: int = 0) -> np.ndarray:
    """(n, 640) synthetic log-mel-like frames of 8 machines; see the module docstring."""
    rng = np.random.default_rng(seed)
    bins = np.arange(MELS)[None, :]
    machines = []
    for _ in range(8):
        centres = rng.uniform(5, 120, rng.integers(3, 7))
        widths = rng.uniform(1.5, 8, len(centres))
        levels = rng.uniform(0.5, 3.0, len(centres))
        machines.append(sum(a * np.exp(-0.5 * ((bins - c) / w) ** 2)
                            for c, w, a in zip(centres, widths, levels)))
    which = rng.integers(0, len(machines), n)
    spectra = np.stack([machines[m][0] for m in which])  # (n, MELS)
    drift = 1 + 0.1 * np.cumsum(rng.normal(0, 1, (n, FRAMES)), axis=1)  # level across frames
    frames = spectra[:, None, :] * drift[:, :, None] + rng.gamma(2.0, 0.05, (n, FRAMES, MELS))
    x = np.log1p(np.maximum(frames, 0)).reshape(n, FRAMES * MELS)
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


def mlperf_tiny_ae() -> nn.Sequential:
    def block(i, o):
        return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()]

    dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128]
    layers = [m for i, o in zip(dims[:-1], dims[1:]) for m in block(i, o)]
    return nn.Sequential(*layers, nn.Linear(128, 640))


def train_user_model(x: np.ndarray, path: Path, epochs: int = 15, seed: int = 0) -> None:
    """Train as a user would (plain PyTorch, BN in training mode) and save the state_dict."""
    torch.manual_seed(seed)
    model = mlperf_tiny_ae()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.from_numpy(x)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(data)).split(128):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(data[idx]), data[idx])
            loss.backward()
            opt.step()
    torch.save(model.eval().state_dict(), path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eta", type=float, default=0.9)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--min-time", type=float, default=1.0)
    args = ap.parse_args(argv)
    CACHE.mkdir(exist_ok=True)
    data_path = CACHE / "machine_features_640.npy"
    if not data_path.is_file():
        np.save(data_path, machine_features())
    model_path = CACHE / "mlperf_tiny_ae_state_dict.pt"
    if not model_path.is_file():
        train_user_model(np.load(data_path), model_path)
    ds = load_dataset(f"npy:{data_path}", seed=0)
    net = load_network(model_path, activations="relu," * 9 + "identity")
    rows = {}
    for name, eta, ft in (("unpruned", 0.0, 0), (f"eta{args.eta}", args.eta, 5)):
        out = CACHE / f"byo_{name}"
        t0 = time.perf_counter()
        result = compress(net, ds, out, CompressOptions(
            sparsity=eta, method="shap-sae", samples=128, finetune_epochs=ft, quiet=True,
            score_rule="paper",  # as committed (measured before the default became hybrid)
            finetune_lr=1e-3,  # as committed (measured before the autoencoder default of 3e-3)
            reconstruct=False,  # ... and before the least-squares refit became the default
            provenance={"model": str(model_path)}))
        rows[name] = {"report": result.report, "seconds": time.perf_counter() - t0, "dir": out}
    bench = run_bench([str(rows[n]["dir"] / f"model.{f}") for n in rows for f in ("npz", "onnx")],
                      BenchOptions(batches=(1, 32), backends="edgeprune,onnxruntime",
                                   runs=args.runs, min_time=args.min_time, threads=1))
    summary = _summarise(rows, bench, net)
    OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(OUT / "results.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(OUT / "results.md", _markdown(summary))
    _plot(summary, OUT / "byo_model.png")
    print(_markdown(summary))
    return 0


def _p50(bench: dict, artifact: str, backend: str, batch: int) -> float | None:
    for row in bench["latency"]:
        if row["artifact"] == artifact and row["backend"] == backend and row["batch"] == batch:
            return row["p50_us"]
    return None


def _summarise(rows: dict, bench: dict, net) -> dict:
    out = {"model": net.describe(), "import_notes": net.meta.get("import", {}).get("notes", []),
           "data": "synthetic machine-sound-like log-mel features (640 = 5 x 128), 4000 samples",
           "measured_on": "this host (x86-64, 2 cores, one thread; shared and noisy)",
           "environment": bench["environment"], "rows": {}}
    for name, row in rows.items():
        rep = row["report"]
        npz = str(row["dir"] / "model.npz")
        onnx_path = str(row["dir"] / "model.onnx")
        out["rows"][name] = {
            "sparsity": rep["sparsity"], "links_kept": rep["links_kept"],
            "test_mse_before": rep["metrics"]["before"]["test_mse"],
            "test_mse_after": rep["metrics"]["after"]["test_mse"],
            "npz_bytes": rep["artifacts"]["npz"]["bytes"],
            "onnx_bytes": rep["artifacts"]["onnx"]["bytes"],
            "dense_fp32_bytes": rep["original_dense_fp32_bytes"],
            "compress_seconds": round(row["seconds"], 1),
            "p50_us": {f"{backend} b{batch}": _p50(bench, path, backend, batch)
                       for backend, path in (("edgeprune-auto", npz), ("onnxruntime", onnx_path))
                       for batch in (1, 32)},
        }
    return out


def _markdown(s: dict) -> str:
    lines = [f"# Bring your own model: MLPerf Tiny AD autoencoder ({s['model']})", "",
             f"Import: {'; '.join(s['import_notes'])}. Data: {s['data']}. Latency "
             f"{s['measured_on']}, p50 of repeated runs.", "",
             "| model | η | links kept | test MSE | model.npz bytes | vs dense fp32 | "
             "edgeprune p50 b1 µs | ONNX Runtime p50 b1 µs | edgeprune p50 b32 µs | "
             "ONNX Runtime p50 b32 µs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in s["rows"].items():
        p = r["p50_us"]

        def f(v):
            return "" if v is None else f"{v:.1f}"
        lines.append(
            f"| {name} | {r['sparsity']:.3f} | {r['links_kept']:,} | {r['test_mse_after']:.5f} | "
            f"{r['npz_bytes']:,} | {r['npz_bytes'] / r['dense_fp32_bytes']:.3f} | "
            f"{f(p['edgeprune-auto b1'])} | {f(p['onnxruntime b1'])} | "
            f"{f(p['edgeprune-auto b32'])} | {f(p['onnxruntime b32'])} |")
    return "\n".join(lines) + "\n"


def _plot(s: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = list(s["rows"])
    keys = ["edgeprune-auto b1", "onnxruntime b1", "edgeprune-auto b32", "onnxruntime b32"]
    width = 0.2
    for k, key in enumerate(keys):
        vals = [s["rows"][n]["p50_us"][key] or 0 for n in names]
        ax.bar(np.arange(len(names)) + (k - 1.5) * width, vals, width, label=key)
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency, µs (log)")
    ax.set_title("MLPerf Tiny AD AE, measured on this host (x86, 1 thread)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4)
    fig.subplots_adjust(bottom=0.2)
    fig.savefig(path)


if __name__ == "__main__":
    raise SystemExit(main())
