"""Artifact sizes of the MNIST-5k 784-256-64-256-784 autoencoder pruned by SHAP-SAE, in float32,
int8 and shared weights, and of small digits autoencoders.

Usage: python benchmarks/artifact_sizes.py [--eta 0.9 0.95] [--finetune-epochs 10]
       [--codebook-epochs 3] [--accuracy-seeds 3 4]
       [--out benchmarks/results/artifact_sizes] [--readme README.md]

Writes sizes.json, sizes.md and sizes.png (measured on this host): per η, dense fp32 weights,
model.npz as compress writes it (bundle version 3: meta + one packed blob) in float32, int8,
shared4 (k-means) and shared5/shared6 with fine-tuned codebooks (``--codebook-epochs``), the
encodings side by side (the one-member-per-array layouts of versions 1 and 2 as earlier releases
wrote them, each index coding, deflate against LZMA), ONNX (dense and sparse initializers) and
TFLite (dense and sparse tensors), each raw and gzip-compressed; every written artifact verified
against PyTorch. The accuracy guard follows benchmarks/paper_mnist.py: a fixed 784-256-10 relu
classifier (20 epochs, trained on the original images, cached) classifies the reconstructions of
the float32 bundle and of each quantized one. ``--accuracy-seeds`` repeats the accuracy rows on
paper_mnist.py's models of other seeds (trained and scored there, cached). The per-layer index
table measures uint8/uint16, delta8 and bitmask. The small models section compares model.npz
with the dense fp32 weights of the same compacted network on digits autoencoders. With --readme
the "Artifact sizes (measured)" table of the README is replaced by the new one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from common import CACHE, RESULTS, mnist_autoencoder, mnist_scores, pruned_at

from edgeprune.artifacts import ExportOptions, write_artifacts
from edgeprune.exporters.contract import ExportError
from edgeprune.exporters.csr import bundle_arrays, serialize
from edgeprune.exporters.quantize import encode_indices, narrowest_uint
from edgeprune.prune import compact_network
from edgeprune.runtime import load

CLASSIFIER = {"hidden": 256, "epochs": 20, "lr": 1e-3, "batch_size": 64}  # paper_mnist recipe
README_START = "## Artifact sizes (measured)"
SHARED_TUNED = ("shared5", "shared6")  # written after codebook fine-tuning
CODEBOOK_LR = 1e-4


def gz(raw: bytes) -> int:
    return len(gzip.compress(raw, 9))


def sizes(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    return len(raw), gz(raw)


def dense_bytes(layers) -> bytes:
    return b"".join(np.asarray(a, np.float32).tobytes() for layer in layers
                    for a in (layer.weight, layer.bias))


def classifier(ds, seed: int = 0):
    """The fixed classifier of paper_mnist.py (same recipe and cache name)."""
    from edgeprune.checkpoint import load_network, save_checkpoint
    from edgeprune.train import build_classifier, train_classifier

    c = CLASSIFIER
    path = CACHE / f"mnist5k_clf_{ds.dim}-{c['hidden']}-10_e{c['epochs']}_s{seed}.pt"
    if path.is_file():
        return load_network(path)
    clf = build_classifier(ds.dim, [c["hidden"]], 10, "relu", seed=seed)
    clf = train_classifier(clf, ds.x_train, ds.y_train, epochs=c["epochs"], lr=c["lr"],
                           batch_size=c["batch_size"], seed=seed, quiet=True)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(clf, path)
    return clf


VARIANTS = [  # label, quantize, indices, packed, compressions measured
    ("v1 float32, int32 indices, one member per array", "none", "int32", False,
     ("stored", "deflate")),
    ("v2 int8, indices auto, one member per array (the previous release)", "int8", "auto",
     False, ("stored", "deflate")),
    ("v3 float32, indices auto", "none", "auto", True, ("deflate", "lzma")),
    ("v3 int8, narrowest uint indices", "int8", "narrow", True, ("deflate", "lzma")),
    ("v3 int8, delta8 indices", "int8", "delta8", True, ("deflate", "lzma")),
    ("v3 int8, bitmask indices", "int8", "bitmask", True, ("deflate", "lzma")),
    ("v3 int8, indices auto (--quantize int8)", "int8", "auto", True, ("deflate", "lzma")),
    ("v3 shared4 (k-means), indices auto", "shared4", "auto", True, ("deflate", "lzma")),
]


def bundle_variants(cn, meta: dict) -> list[dict]:
    """Every bundle encoding of ``cn``, measured in memory (same meta as the written file)."""
    rows = []
    kw = {"provenance": meta["provenance"], "report": meta["report"]}
    for label, quantize, indices, packed, compressions in VARIANTS:
        if indices == "narrow":
            arrays = _narrow_arrays(cn, kw)
        else:
            arrays = bundle_arrays(cn, quantize=quantize, indices=indices, packed=packed, **kw)
        for compression in compressions:
            raw = serialize(arrays, compression)
            rows.append({"artifact": f"model.npz {label}, {compression}", "bytes": len(raw),
                         "gzip_bytes": gz(raw), "quantize": quantize, "indices": indices,
                         "packed": packed, "compression": compression})
    return rows


def _narrow_arrays(cn, kw):
    """int8 (packed) with each layer's narrowest uint dtype forced (auto may pick another)."""
    per_layer = [narrowest_uint(max(layer.weight.shape[1] - 1, 0)).name for layer in cn.layers]
    arrays = bundle_arrays(cn, quantize="int8", indices="int32", **kw)
    meta = json.loads(str(arrays["meta"].item()))
    for k, (entry, coding) in enumerate(zip(meta["layers"], per_layer, strict=True), start=1):
        arrays[f"layer{k}.indices"] = arrays[f"layer{k}.indices"].astype(coding)
        entry["indices"] = coding
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


def index_table(cn) -> list[dict]:
    """Per layer: bytes of the column indices as int32, narrowest uint, delta8 and bitmask
    (raw, zlib)."""
    import scipy.sparse as sp

    out = []
    for k, layer in enumerate(cn.layers, start=1):
        csr = sp.csr_matrix(np.asarray(layer.weight, np.float32))
        csr.eliminate_zeros()
        csr.sort_indices()
        rows, cols = csr.shape
        row = {"layer": k, "shape": list(csr.shape), "nnz": int(csr.nnz)}
        narrow = narrowest_uint(max(cols - 1, 0)).name
        for coding in ("int32", narrow, "delta8", "bitmask"):
            arr = encode_indices(csr.indices, csr.indptr, cols, coding, rows)
            key = "narrow" if coding == narrow else coding
            row[key] = {"coding": coding, "bytes": int(arr.nbytes),
                        "zlib_bytes": len(zlib.compress(arr.tobytes(), 6))}
        out.append(row)
    return out


def shared_tuned(pruned, ds, coding: str, epochs: int, seed: int):
    """``pruned`` with shared weights whose codebooks were fine-tuned (weight_sharing)."""
    from edgeprune.weight_sharing import share_and_finetune

    return share_and_finetune(pruned, ds, coding, epochs=epochs, lr=CODEBOOK_LR, seed=seed)[0]


def _label(fmt: str, label: str) -> str:
    onnx = {"sparse": "sparse initializers", "int8": "int8 QDQ, onnxruntime tooling"}
    tfl = {"sparse": "sparse tensors", "int8": "full-integer int8, dense weights"}
    return {"npz": f"model.npz as compress writes it ({label})",
            "onnx": f"ONNX ({onnx.get(label, 'dense')})",
            "tflite": f"TFLite ({tfl.get(label, 'dense')})"}[fmt]


def mnist_eta(net, ds, scores_path, eta, clf, tmp: Path, finetune_epochs: int,
              codebook_epochs: int) -> dict:
    from edgeprune.train import accuracy

    res = pruned_at(net, ds, scores_path, eta, tmp / f"c{eta}", finetune_epochs=finetune_epochs)
    pruned = res.network
    cn = compact_network(pruned)
    rows = [{"artifact": "dense fp32 of the compacted pruned layers",
             "bytes": 4 * sum(la.weight.size + la.bias.size for la in cn.layers),
             "gzip_bytes": gz(dense_bytes(cn.layers))}]
    written, refused = {}, []
    tuned = {c: shared_tuned(pruned, ds, c, codebook_epochs, 0) for c in SHARED_TUNED}
    jobs = [("fp32", pruned, ExportOptions(), ["npz", "onnx", "tflite"]),
            ("sparse", pruned, ExportOptions(True, True), ["onnx", "tflite"]),
            ("int8", pruned, ExportOptions(quantize="int8"), ["npz", "onnx", "tflite"]),
            ("shared4", pruned, ExportOptions(quantize="shared4"), ["npz"])]
    jobs += [(f"{c}, {codebook_epochs} codebook epochs", tuned[c], ExportOptions(quantize=c),
              ["npz"]) for c in SHARED_TUNED]
    for label, network, opts, formats in jobs:
        out = tmp / f"{label.split(',')[0]}{eta}"
        out.mkdir()
        arts = {}
        for fmt in formats:  # one at a time: an int8 file refused by its check is recorded
            try:
                arts.update(write_artifacts(
                    network, compact_network(network), ds.x_test, out, [fmt], opts,
                    x_calibration=ds.x_train, float32_net=pruned))
            except ExportError as exc:
                refused.append({"artifact": f"{fmt} ({label})", "error": str(exc)})
        written[label] = arts
        for fmt, art in arts.items():
            raw, g = sizes(Path(art["path"]))
            rows.append({"artifact": _label(fmt, label), "bytes": raw, "gzip_bytes": g,
                         "max_abs_diff_vs_pytorch": art["max_abs_diff_vs_pytorch"],
                         **({"max_abs_diff_vs_fp32": art["max_abs_diff_vs_fp32"]}
                            if "max_abs_diff_vs_fp32" in art else {})})
    paths = {label.split(",")[0]: Path(arts["npz"]["path"])
             for label, arts in written.items() if "npz" in arts}
    meta = json.loads(str(np.load(paths["fp32"])["meta"].item()))
    rows += bundle_variants(cn, meta)
    recon = {k: load(p)(ds.x_test) for k, p in paths.items()}
    from edgeprune.exporters.onnx import run_onnx
    from edgeprune.exporters.tflite import run_tflite

    for fmt, run in (("onnx", run_onnx), ("tflite", run_tflite)):
        if fmt in written["int8"]:
            recon[f"{fmt} int8"] = run(written["int8"][fmt]["path"], ds.x_test)
    acc = {k: accuracy(clf, r, ds.y_test) for k, r in recon.items()}
    mse = {k: float(np.mean((r - ds.x_test) ** 2)) for k, r in recon.items()}
    from edgeprune.runtime.info import describe

    info = describe(paths["int8"])
    return {"target_sparsity": eta, "achieved_sparsity": pruned.sparsity,
            "links_kept": pruned.n_active, "links_total": pruned.n_links,
            "rows": rows, "index_codings": index_table(cn), "refused": refused,
            "classifier_accuracy": acc,
            "classifier_accuracy_drop_pp": {k: 100 * (acc["fp32"] - a) for k, a in acc.items()
                                            if k != "fp32"},
            "test_mse": mse, "int8_bundle_bytes": info["bytes_on_disk"],
            "int8_in_memory_bytes": info["in_memory_bytes"],
            "int8_stored_array_bytes": info["stored_array_bytes"],
            "bundle_bytes": {k: p.stat().st_size for k, p in paths.items()}}


def seed_accuracy(seed: int, etas: list[float], finetune_epochs: int,
                  codebook_epochs: int) -> list[dict]:
    """paper_mnist.py's dense AE and classifier of ``seed`` (cached there), pruned by its
    SHAP-SAE scores at each η and fine-tuned: classifier accuracy of the float32, int8 and
    shared bundles, and their bytes (as compress writes them, same metadata)."""
    import paper_mnist as pm

    from edgeprune.artifacts import bundle_meta
    from edgeprune.data import load_dataset
    from edgeprune.exporters.quantize import quantized_network
    from edgeprune.prune import prune_network
    from edgeprune.train import accuracy, train_network

    args = argparse.Namespace(quick=False, estimator="auto", samples=None, threads=1)
    rc = pm.recipe(args)
    ds = load_dataset("mnist5k", seed=seed)
    nets, _ = pm.trained_models("mnist5k", ds, seed, rc, True, only=("dense",))
    scores, _ = pm.shap_scores("mnist5k", nets["dense"], ds, seed, rc)
    out = []
    for eta in etas:
        pruned = prune_network(nets["dense"], scores, sparsity=eta).network
        pruned, _ = train_network(pruned, ds.x_train, ds.x_val, epochs=finetune_epochs,
                                  lr=rc["finetune_lr"], seed=seed, quiet=True)
        provenance, report = bundle_meta(pruned, {"data": "mnist5k"})
        versions = {"fp32": ("none", pruned), "int8": ("int8", quantized_network(pruned)),
                    "shared4": ("shared4", quantized_network(pruned, "shared4"))}
        versions.update({c: (c, shared_tuned(pruned, ds, c, codebook_epochs, seed))
                         for c in SHARED_TUNED})
        row = {"seed": seed, "eta": eta, "achieved_sparsity": pruned.sparsity,
               "accuracy": {}, "bytes": {}}
        for name, (quantize, network) in versions.items():
            row["accuracy"][name] = accuracy(nets["classifier"], network.forward(ds.x_test),
                                             ds.y_test)
            source = pruned if quantize in ("int8", "shared4") else network
            row["bytes"][name] = len(serialize(bundle_arrays(
                compact_network(source), quantize=quantize, provenance=provenance,
                report=report)))
        row["drop_pp"] = {k: 100 * (row["accuracy"]["fp32"] - a)
                          for k, a in row["accuracy"].items() if k != "fp32"}
        out.append(row)
        print(f"seed {seed} eta {eta}: " + ", ".join(
            f"{k} {v:+.2f} pp ({row['bytes'][k]:,} B)" for k, v in row["drop_pp"].items()),
            flush=True)
    return out


def small_models(tmp: Path) -> list[dict]:
    """digits autoencoders (64-32-8-32-64, 60 epochs, cached), magnitude-pruned at several η:
    model.npz (float32 and int8, as compress writes them, and as the previous release wrote
    them: one member per array) against the dense fp32 of the same compacted network."""
    from edgeprune.checkpoint import load_network, save_checkpoint
    from edgeprune.compress import CompressOptions, compress
    from edgeprune.data import load_dataset
    from edgeprune.train import build_autoencoder, train_network

    ds = load_dataset("digits", seed=0)
    path = CACHE / "digits_ae_64-32-8_e60_s0.pt"
    if path.is_file():
        net = load_network(path)
    else:
        net = build_autoencoder(64, [32, 8], "relu", "sigmoid", seed=0)
        net, _ = train_network(net, ds.x_train, ds.x_val, epochs=60, seed=0, quiet=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(net, path)
    out = []
    for eta in (0.0, 0.5, 0.8, 0.9, 0.95):
        row = {"model": "digits AE 64-32-8-32-64", "eta": eta}
        for quantize in ("none", "int8"):
            res = compress(net, ds, tmp / f"d{eta}{quantize}", CompressOptions(
                sparsity=eta, method="magnitude", quiet=True, export="npz",
                export_options=ExportOptions(quantize=quantize)))
            cn = compact_network(res.network)
            dense = dense_bytes(cn.layers)
            row["dense_fp32_compacted_bytes"] = len(dense)
            row["dense_fp32_compacted_gzip_bytes"] = gz(dense)
            npz = tmp / f"d{eta}{quantize}" / "model.npz"
            row[f"npz_{quantize}_bytes"], row[f"npz_{quantize}_gzip_bytes"] = sizes(npz)
            meta = json.loads(str(np.load(npz)["meta"].item()))
            old = serialize(bundle_arrays(cn, quantize=quantize, packed=False,
                                          provenance=meta["provenance"], report=meta["report"]))
            row[f"npz_{quantize}_members_bytes"] = len(old)
        row["achieved_sparsity"] = res.network.sparsity
        out.append(row)
    return out


def markdown(result: dict, compact: bool = False) -> list[str]:
    """sizes.md; ``compact`` (the README): the artifacts as written, without the encoding
    variants and the per-layer index table."""
    dense = result["dense_fp32_bytes"]
    md = [f"Measured on this host; produced by `{result['command']}`. SHAP-SAE scores "
          f"(`--estimator auto`, 256 samples), {result['finetune_epochs']} epochs of masked "
          "fine-tuning; quantized after fine-tuning; shared5/shared6 with "
          f"{result['codebook_epochs']} epochs of codebook fine-tuning (Adam, lr "
          f"{CODEBOOK_LR}). Goal line: dense fp32 / 40 = {dense / 40:,.0f} bytes.", ""]
    for run in result["etas"]:
        acc = run["classifier_accuracy"]
        md += [f"### η = {run['achieved_sparsity']:.4f} ({run['links_kept']} of "
               f"{run['links_total']} links)", "",
               "| artifact | bytes | gzip bytes | smaller than dense fp32 | max abs diff |",
               "|---|---:|---:|---:|---:|",
               f"| dense fp32 weights + biases (unpruned) | {dense:,} | "
               f"{result['dense_fp32_gzip_bytes']:,} | 1.0× | |"]
        for r in run["rows"]:
            if compact and "compression" in r:
                continue
            diff = r.get("max_abs_diff_vs_fp32", r.get("max_abs_diff_vs_pytorch"))
            what = "" if diff is None else (
                f"{diff:.1e}" + (" vs fp32" if "max_abs_diff_vs_fp32" in r else ""))
            md.append(f"| {r['artifact']} | {r['bytes']:,} | {r['gzip_bytes']:,} | "
                      f"{dense / r['bytes']:.1f}× | {what} |")
        drops = run["classifier_accuracy_drop_pp"]
        md += ["", "Classifier accuracy on the reconstructions (paper_mnist protocol): "
               f"fp32 bundle {100 * acc['fp32']:.2f} %, "
               + ", ".join(f"{k} {100 * acc[k]:.2f} % (drop {drops[k]:.2f} pp)" for k in drops)
               + "; test MSE " + ", ".join(f"{k} {v:.5f}" for k, v in run["test_mse"].items())
               + ". The int8 "
               f"bundle holds {run['int8_stored_array_bytes']:,} bytes of arrays (uncompressed) "
               f"and {run['int8_in_memory_bytes']:,} bytes in RAM once loaded (dequantized to "
               "float32 for the kernels).", ""]
        md += [f"Refused by its write-time check: {r['artifact']}: {r['error']}"
               for r in run["refused"]] + ([""] if run["refused"] else [])
        if compact:
            continue
        md += ["Column indices per layer (bytes raw / zlib):", "",
               "| layer | shape | nnz | int32 | narrowest uint | delta8 | bitmask |",
               "|---:|---|---:|---:|---:|---:|---:|"]
        for row in run["index_codings"]:
            cells = [f"{row[k]['bytes']:,} / {row[k]['zlib_bytes']:,}"
                     + (f" ({row[k]['coding']})" if k == "narrow" else "")
                     for k in ("int32", "narrow", "delta8", "bitmask")]
            md.append(f"| {row['layer']} | {row['shape'][0]}×{row['shape'][1]} | {row['nnz']:,} "
                      f"| {' | '.join(cells)} |")
        md.append("")
    md += seeds_markdown(result)
    md += ["### Small models: model.npz vs the dense fp32 weights of the same compacted network",
           "", "raw bytes (gzip bytes); \"previous release\" = the same arrays one member per "
           "array (bundle versions 1/2, as the writer before version 3 wrote them).", "",
           "| model | η | dense fp32 (compacted) | model.npz fp32 | model.npz int8 | "
           "previous release fp32 / int8 |", "|---|---:|---:|---:|---:|---:|"]
    for row in result["small_models"]:
        md.append(f"| {row['model']} (magnitude) | {row['achieved_sparsity']:.3f} | "
                  f"{row['dense_fp32_compacted_bytes']:,} "
                  f"({row['dense_fp32_compacted_gzip_bytes']:,}) | "
                  f"{row['npz_none_bytes']:,} ({row['npz_none_gzip_bytes']:,}) | "
                  f"{row['npz_int8_bytes']:,} ({row['npz_int8_gzip_bytes']:,}) | "
                  f"{row['npz_none_members_bytes']:,} / {row['npz_int8_members_bytes']:,} |")
    return md


def seeds_markdown(result: dict) -> list[str]:
    """Accuracy drop per seed and η (seed 0 from the main rows, others from --accuracy-seeds)."""
    rows = [{"seed": 0, "eta": run["target_sparsity"], "drop_pp": {
        k: v for k, v in run["classifier_accuracy_drop_pp"].items() if " " not in k},
        "bytes": run["bundle_bytes"]} for run in result["etas"]]
    rows += result.get("seed_accuracy", [])
    if len(rows) <= len(result["etas"]):
        return []
    names = [k for k in rows[0]["drop_pp"]]
    md = ["### Accuracy drop against the float32 bundle, per seed (pp; bytes of model.npz)", "",
          "Positive = accuracy lost, negative = gained (the test split has 1,000 images: 0.1 pp "
          "is one image). Codebook fine-tuning is 3 more epochs of training, part of its gain.",
          "",
          "Seed 0 is the model above (benchmarks/common.py); the other seeds are "
          "benchmarks/paper_mnist.py's models (its cache), pruned by their own SHAP-SAE scores "
          "and fine-tuned the same way.", "",
          "| η | seed | " + " | ".join(names) + " |", "|---:|---:|" + "---:|" * len(names)]
    for row in sorted(rows, key=lambda r: (r["eta"], r["seed"])):
        md.append(f"| {row['eta']} | {row['seed']} | " + " | ".join(
            f"{row['drop_pp'][k]:+.2f} ({row['bytes'][k]:,})" for k in names) + " |")
    for eta in sorted({r["eta"] for r in rows}):
        sel = [r for r in rows if r["eta"] == eta]
        cells = []
        for k in names:
            d = np.array([r["drop_pp"][k] for r in sel])
            b = np.array([r["bytes"][k] for r in sel])
            cells.append(f"{d.mean():+.2f} ± {d.std(ddof=1) if len(d) > 1 else 0:.2f} "
                         f"(max {d.max():+.2f}; {b.max():,} B max)")
        md.append(f"| {eta} | mean ± sd of {len(sel)} | " + " | ".join(cells) + " |")
    return md + [""]


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot (pip install 'edgeprune[bench]')")
        return
    runs = result["etas"]
    fig, axes = plt.subplots(1, len(runs), figsize=(9 * len(runs), 7), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        rows = [r for r in run["rows"] if "compression" not in r  # each layout at its best:
                or r["compression"] == ("lzma" if r["packed"] else "deflate")]
        names = [r["artifact"].replace("model.npz ", "npz ") for r in rows]
        y = np.arange(len(rows))
        ax.barh(y + 0.2, [r["bytes"] / 1024 for r in rows], 0.4, label="raw")
        ax.barh(y - 0.2, [r["gzip_bytes"] / 1024 for r in rows], 0.4, label="gzip")
        ax.axvline(result["dense_fp32_bytes"] / 40 / 1024, color="k", ls="--", lw=1,
                   label="dense fp32 / 40")
        ax.set_yticks(y, names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("KiB (log)")
        ax.set_title(f"η = {run['achieved_sparsity']:.3f} (measured on this host)", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Artifact sizes, MNIST-5k autoencoder 784-256-64-256-784")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def update_readme(readme: Path, md: list[str], result: dict) -> None:
    """Replace the table block of the README's size section (up to its "Plot:" paragraph)."""
    text = readme.read_text()
    start = text.index(README_START)
    body_start = text.index("\n\n", text.index("Every artifact", start)) + 2
    end = text.index("Plot: `benchmarks/results/artifact_sizes/sizes.png`", start)
    readme.write_text(text[:body_start] + "\n".join(md) + "\n\n" + text[end:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eta", type=float, nargs="+", default=[0.9, 0.95])
    ap.add_argument("--out", type=Path, default=RESULTS / "artifact_sizes")
    ap.add_argument("--readme", type=Path, default=None)
    ap.add_argument("--finetune-epochs", type=int, default=10,
                    help="masked fine-tuning after pruning (paper_mnist.py's recipe: 10)")
    ap.add_argument("--codebook-epochs", type=int, default=3,
                    help="codebook fine-tuning of shared5/shared6 (edgeprune.weight_sharing)")
    ap.add_argument("--accuracy-seeds", type=int, nargs="*", default=[],
                    help="more seeds for the accuracy rows (paper_mnist.py's cached models)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    net, ds, _ = mnist_autoencoder()
    scores_path, _ = mnist_scores(net, ds)
    clf = classifier(ds)
    dense = dense_bytes(net.layers)
    result = {"model": "MNIST-5k autoencoder 784-256-64-256-784 (relu, sigmoid output)",
              "method": "shap-sae", "python": platform.python_version(),
              "machine": platform.machine(), "measured_on": "this host",
              "dense_fp32_bytes": len(dense), "dense_fp32_gzip_bytes": gz(dense),
              "finetune_epochs": args.finetune_epochs, "codebook_epochs": args.codebook_epochs,
              "command": "python benchmarks/artifact_sizes.py --eta "
                         + " ".join(map(str, args.eta))
                         + f" --finetune-epochs {args.finetune_epochs}"
                         + f" --codebook-epochs {args.codebook_epochs}"
                         + (" --accuracy-seeds " + " ".join(map(str, args.accuracy_seeds))
                            if args.accuracy_seeds else "")
                         + (f" --readme {args.readme}" if args.readme else ""),
              "etas": []}
    with tempfile.TemporaryDirectory() as tmp:
        for eta in args.eta:
            result["etas"].append(mnist_eta(net, ds, scores_path, eta, clf, Path(tmp),
                                            args.finetune_epochs, args.codebook_epochs))
            print(f"eta {eta}: " + ", ".join(f"{k} {v:,} B" for k, v in
                                             result["etas"][-1]["bundle_bytes"].items()),
                  flush=True)
        result["small_models"] = small_models(Path(tmp))
    result["seed_accuracy"] = [row for seed in args.accuracy_seeds for row in seed_accuracy(
        seed, args.eta, args.finetune_epochs, args.codebook_epochs)]
    (args.out / "sizes.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (args.out / "sizes.md").write_text("\n".join(md) + "\n")
    plot(result, args.out / "sizes.png")
    if args.readme:
        update_readme(args.readme, markdown(result, compact=True), result)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
