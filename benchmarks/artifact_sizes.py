"""Artifact sizes of the MNIST-5k 784-256-64-256-784 autoencoder pruned by SHAP-SAE.

Usage: python benchmarks/artifact_sizes.py [--eta 0.9] [--out benchmarks/results/artifact_sizes]

Writes sizes.json, sizes.md and sizes.png: dense fp32 weights, the CSR bundle, ONNX (dense and
sparse initializers) and TFLite (dense and sparse tensors), each raw and gzip-compressed, every
artifact verified against PyTorch when written.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
import tempfile
from pathlib import Path

from common import RESULTS, mnist_autoencoder, mnist_scores, pruned_at

from edgeprune.artifacts import ExportOptions, write_artifacts
from edgeprune.prune import compact_network


def sizes(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    return len(raw), len(gzip.compress(raw, 9))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eta", type=float, default=0.9)
    ap.add_argument("--out", type=Path, default=RESULTS / "artifact_sizes")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    net, ds, _ = mnist_autoencoder()
    scores_path, _ = mnist_scores(net, ds)
    rows = []
    dense_bytes = 4 * sum(layer.n_links + layer.out_dim for layer in net.layers)
    dense_gz = len(gzip.compress(b"".join(a.tobytes() for layer in net.layers
                                          for a in (layer.weight, layer.bias)), 9))
    rows.append({"artifact": "dense fp32 weights + biases (unpruned)", "bytes": dense_bytes,
                 "gzip_bytes": dense_gz})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        res = pruned_at(net, ds, scores_path, args.eta, tmp / "c")
        pruned = res.network
        cn = compact_network(pruned)
        pruned_dense = sum(4 * (layer.weight.size + layer.bias.size) for layer in cn.layers)
        rows.append({"artifact": "dense fp32 of the compacted pruned layers", "bytes":
                     pruned_dense, "gzip_bytes": len(gzip.compress(b"".join(
                         a.tobytes() for layer in cn.layers for a in (layer.weight, layer.bias)),
                         9))})
        for label, sub, opts in [("dense", "d", ExportOptions()),
                                 ("sparse", "s", ExportOptions(True, True))]:
            out = tmp / sub
            out.mkdir()
            arts = write_artifacts(pruned, cn, ds.x_test, out, ["npz", "onnx", "tflite"], opts)
            for fmt, art in arts.items():
                if fmt == "npz" and label == "sparse":
                    continue
                name = {"npz": "edgeprune CSR bundle (model.npz)",
                        "onnx": f"ONNX ({'sparse initializers' if label == 'sparse' else 'dense'})",
                        "tflite": f"TFLite ({'sparse tensors' if label == 'sparse' else 'dense'})",
                        }[fmt]
                raw, gz = sizes(Path(art["path"]))
                rows.append({"artifact": name, "bytes": raw, "gzip_bytes": gz,
                             "max_abs_diff_vs_pytorch": art["max_abs_diff_vs_pytorch"]})
    result = {"model": "MNIST-5k autoencoder 784-256-64-256-784 (relu, sigmoid output)",
              "method": "shap-sae", "target_sparsity": args.eta,
              "achieved_sparsity": pruned.sparsity, "links_kept": pruned.n_active,
              "links_total": pruned.n_links, "python": platform.python_version(), "rows": rows,
              "command": f"python benchmarks/artifact_sizes.py --eta {args.eta}"}
    (args.out / "sizes.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"Pruned to η = {pruned.sparsity:.4f} ({pruned.n_active} of {pruned.n_links} links) "
          f"with SHAP-SAE; produced by `{result['command']}`.", "",
          "| artifact | bytes | gzip bytes | vs dense fp32 | max abs diff vs PyTorch |",
          "|---|---:|---:|---:|---:|"]
    for r in rows:
        diff = r.get("max_abs_diff_vs_pytorch")
        md.append(f"| {r['artifact']} | {r['bytes']:,} | {r['gzip_bytes']:,} | "
                  f"{r['bytes'] / dense_bytes:.3f} | {'' if diff is None else f'{diff:.1e}'} |")
    (args.out / "sizes.md").write_text("\n".join(md) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4.5))
        names = [r["artifact"] for r in rows]
        y = range(len(rows))
        ax.barh([i + 0.2 for i in y], [r["bytes"] / 1024 for r in rows], 0.4, label="raw")
        ax.barh([i - 0.2 for i in y], [r["gzip_bytes"] / 1024 for r in rows], 0.4, label="gzip")
        ax.set_yticks(list(y), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("KiB")
        ax.set_title(f"Artifact sizes, MNIST-5k autoencoder at η = {pruned.sparsity:.2f}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out / "sizes.png", dpi=120)
    except ImportError:
        print("matplotlib missing: no plot (pip install 'edgeprune[bench]')")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
