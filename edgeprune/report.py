"""Per-layer tables and the JSON / Markdown reports written by ``edgeprune compress``.

Numbering (the same in every report, explanation, plot and note): text for people numbers
layers, units and inputs from 1, as the paper does (x1..xn, support sets (i, j)); JSON fields
that hold positions (``unused_inputs``, ``constant_outputs``, ``*_index``) are 0-based array
indices, as numpy uses them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from edgeprune.choices import PATH_SPECS
from edgeprune.fileio import write_text_atomic


def layer_table(per_layer: list[dict]) -> list[list[str]]:
    """Rows of the per-layer table: layer, shape, links kept, units kept, eta."""
    rows = [["layer", "shape (out x in)", "links kept", "units kept", "sparsity"]]
    for row in per_layer:
        out, inp = row["shape"]
        rows.append([
            str(row["layer"]),
            f"{out} x {inp}",
            f"{row['links_kept']}/{row['links']}",
            f"{row['units_kept']}/{out}",
            f"{row['sparsity']:.3f}",
        ])
    return rows


def format_text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown_table(rows: list[list[str]]) -> str:
    head = "| " + " | ".join(rows[0]) + " |"
    sep = "|" + "|".join("---:" for _ in rows[0]) + "|"
    body = ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join([head, sep, *body])


def metrics_lines(before: dict, after: dict) -> list[tuple[str, str, str]]:
    names = {"test_mse": "reconstruction MSE (test)", "probe_accuracy": "linear-probe accuracy",
             "test_neg_elbo": "VAE -ELBO per sample (test)",
             "test_recon_nll": "VAE reconstruction NLL per sample (test)",
             "test_kl": "VAE KL to the prior per sample (test)"}
    return [(names.get(k, k), f"{before[k]:.6g}", f"{after.get(k, float('nan')):.6g}")
            for k in before]


#: A metric this much worse after pruning without fine-tuning earns a hint to fine-tune.
MSE_RATIO_HINT = 1.5
ACCURACY_DROP_HINT = 0.02


def importance_level_line(report: dict) -> str:
    """" at importance level m = ..." for SHAP-SAE; other methods have no meaningful m."""
    m = report.get("importance_level")
    return f" at importance level m = {m:.4f}" if m is not None and \
        "shap-sae" in str(report.get("method", "shap-sae")) else ""


def target_line(target: dict) -> str:
    """How --target-macs / --target-size / --target-latency was met."""
    if target["kind"] == "latency":
        line = (f"budget: at most {target['target']:g} µs per sample (predicted, batch 1, "
                f"{target['latency_model']['source']} cost model); chose "
                f"{target['unit_fraction']:.0%} of hidden units removed, predicted "
                f"{target['value']:.1f} µs, of {len(target['candidates'])} candidates")
        measured = target.get("measured_us_this_host")
        return line + (f"; measured {measured:.1f} µs on this host" if measured else "")
    what = "multiply-adds per inference" if target["kind"] == "macs" else "bytes of model.npz"
    line = (f"budget: at most {target['target']:,} {what}; the least sparsity within it "
            f"gives {target['value']:,} (searched {len(target['probes'])} sparsities)")
    trim = target.get("trimmed_after_finetune")
    if trim:
        line += (f"; fine-tuning grew the file, so {trim['links']} more of the smallest "
                 "weights were pruned to stay within it")
    return line


def size_line(report: dict) -> str | None:
    """model.npz's bytes against the original model's dense fp32 weights and biases."""
    dense = report.get("original_dense_fp32_bytes")
    npz = (report.get("artifacts") or {}).get("npz", {}).get("bytes")
    if not dense or not npz:
        return None
    ratio = (f"{dense / npz:.1f}x smaller" if npz <= dense else
             f"{npz / dense:.2f}x larger: on a model this small the bundle's index arrays and "
             "metadata outweigh the removed links")
    return (f"size: model.npz {npz:,} bytes vs {dense:,} bytes of dense fp32 weights in the "
            f"original model ({ratio})")


def degradation_hints(report: dict) -> list[str]:
    """A hint to fine-tune when a metric got much worse and no fine-tuning ran."""
    if report.get("finetune_epochs"):
        return []
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    hints = []
    for key, b in before.items():
        a = after.get(key)
        if a is None or b is None:
            continue
        if key.endswith("mse") and b > 0 and a / b >= MSE_RATIO_HINT:
            hints.append(f"{key} rose {a / b:.1f}x")
        elif key.endswith("accuracy") and b - a >= ACCURACY_DROP_HINT:
            hints.append(f"{key} fell {100 * (b - a):.1f} points")
    if not hints:
        return []
    return [f"hint: {', '.join(hints)} without fine-tuning; add --finetune-epochs 10 to "
            "recover most of it"]


def vae_line(vae: dict) -> str:
    """One line on a pruned VAE: its likelihood and what became of the log-variance head."""
    head = vae.get("logvar_head")
    line = (f"vae: {vae['latent_dim']} latent units (mu = layer {vae['mu_layer']}), "
            f"{vae['likelihood']} likelihood, beta {vae['beta']:g}; log-variance head ")
    if head is None:
        return line + "absent (mu only)"
    line += (f"{head['links_kept']}/{head['links']} links kept (sparsity "
             f"{head['sparsity']:.3f})")
    return line + ("" if vae["logvar_in_artifacts"] else
                   ", kept in pruned.pt, dropped from the artifacts (--drop-logvar)")


def quantization_lines(report: dict) -> list[str]:
    from edgeprune.quantization import quantization_lines as lines

    return lines(report)


def reconstruction_summary(rec: dict) -> str:
    """One console line: how much of the original pre-activations the refit recovered."""
    layers = rec["layers"]
    return ("reconstruct: kept weights refit by least squares (ridge "
            f"{rec['ridge']:g}, {rec['samples']} samples); pre-activation error per layer "
            + ", ".join(f"{lay['error_pruned']:.3g} -> {lay['error_reconstructed']:.3g}"
                        for lay in layers))


def reconstruction_lines(rec: dict) -> list[str]:
    """report.md's section on --reconstruct: the relative error of each layer's
    pre-activations against the network before pruning, as pruned and as refit."""
    return ["## Reconstruction (--reconstruct)", "",
            f"Kept weights and biases refit layer by layer by ridge least squares (ridge "
            f"{rec['ridge']:g} of the mean input Gram diagonal) on {rec['samples']} training "
            f"samples in {rec['seconds']:.2f} s; the masks are unchanged. Error: the fraction "
            "of the pre-activations' variance (before pruning) not reproduced, on those "
            "samples.", "", "| layer | units refit | error as pruned | error refit |",
            "|---:|---:|---:|---:|",
            *(f"| {lay['layer']} | {lay['units_refit']} | {lay['error_pruned']:.4g} | "
              f"{lay['error_reconstructed']:.4g} |" for lay in rec["layers"])]


def format_summary(report: dict) -> str:
    """The text the CLI prints after compress: the table plus metrics before/after."""
    lines = [f"model: {n}" for n in (report.get("import") or {}).get("notes", [])]
    lines += [format_text_table(layer_table(report["layers"])), ""]
    lines.append(f"achieved sparsity eta = {report['sparsity']:.4f}"
                 + importance_level_line(report)
                 + f" ({report['links_kept']}/{report['links_total']} links kept)")
    target = (report.get("scoring") or {}).get("target")
    if target:
        lines.append(target_line(target))
    if report.get("unused_inputs"):
        lines.append(f"unused inputs: {len(report['unused_inputs'])} of {report['input_dim']}")
    if report.get("constant_outputs"):
        lines.append(f"constant outputs: {len(report['constant_outputs'])} of "
                     f"{report['output_dim']}")
    lines.extend(report.get("support_sets", []))
    for name, b, a in metrics_lines(report["metrics"]["before"], report["metrics"]["after"]):
        lines.append(f"{name}: {b} -> {a}")
    if "runtime_max_abs_diff" in report:
        lines.append(f"runtime vs PyTorch: max |diff| = {report['runtime_max_abs_diff']:.2e}")
    for fmt, art in (report.get("artifacts") or {}).items():
        lines.append(f"model.{fmt}: {art['bytes']} bytes, max |diff| vs PyTorch "
                     f"{art['max_abs_diff_vs_pytorch']:.2e}")
    size = size_line(report)
    if size:
        lines.append(size)
    lines.extend(quantization_lines(report))
    if report.get("reconstruction"):
        lines.append(reconstruction_summary(report["reconstruction"]))
    if report.get("vae"):
        lines.append(vae_line(report["vae"]))
    lines.extend(f"note: {n}" for n in report.get("export_notes", []))
    lines.extend(f"warning: {n}" for n in report.get("notes", []))
    lines.extend(degradation_hints(report))
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """``report.md``: what was pruned, how, and what it cost."""
    src = report.get("source", {})
    lines = [
        "# edgeprune compression report",
        "",
        f"- model: `{src.get('model', '?')}` ({report.get('network', '')})",
        f"- data: `{src.get('data', '?')}`, method `{report['method']}`"
        + (f", estimator `{report['scoring']['estimator']}`"
           if (report.get("scoring") or {}).get("estimator") else "")
        + (f", scores from `{report['scoring']['from']}`"
           if (report.get("scoring") or {}).get("from") else "")
        + (f", score rule `{report['scoring']['score_rule']}`"
           + (f" (α = {report['scoring']['alpha']:g})" if "alpha" in report["scoring"] else "")
           if (report.get("scoring") or {}).get("score_rule") else ""),
        f"- achieved sparsity η = {report['sparsity']:.4f}"
        + importance_level_line(report).replace(" at importance", " at SHAP-SAE importance"),
        f"- links kept: {report['links_kept']} of {report['links_total']}",
        *[f"- model import: {n}" for n in (report.get("import") or {}).get("notes", [])],
        f"- fine-tuning epochs: {report.get('finetune_epochs', 0)}"
        + "".join(f", {k.replace('_', ' ')} {v}"
                  for k, v in (report.get("finetune_recipe") or {}).items()),
        *([f"- allocation: {report['allocation']} (one budget over per-layer-normalised "
           "scores)"] if report.get("allocation") else []),
        "",
        "## Layers",
        "",
        format_markdown_table(layer_table(report["layers"])),
        "",
        "## Quality (test split)",
        "",
        "| metric | before | after |",
        "|---|---:|---:|",
    ]
    for name, b, a in metrics_lines(report["metrics"]["before"], report["metrics"]["after"]):
        lines.append(f"| {name} | {b} | {a} |")
    lines += [
        "",
        f"Unused inputs ({len(report['unused_inputs'])}, numbered from 1): "
        + (", ".join(f"x{j + 1}" for j in report["unused_inputs"][:64]) or "none")
        + (" …" if len(report["unused_inputs"]) > 64 else ""),
        "",
        f"Constant outputs ({len(report['constant_outputs'])}, numbered from 1): "
        + (", ".join(f"output {int(k) + 1} = {v:.4g}"
                     for k, v in list(report["constant_outputs"].items())[:32]) or "none"),
    ]
    if report.get("steps"):
        lines += ["", "## Gradual pruning steps", "", "| step | target η | η | fine-tune epochs "
                  "| test metrics |", "|---:|---:|---:|---:|---|"]
        lines += [f"| {s['step']} | {s['target_sparsity']:.4f} | {s['sparsity']:.4f} | "
                  f"{s['finetune_epochs']} | "
                  + ", ".join(f"{k} {v:.4g}" for k, v in s["metrics"].items()
                              if isinstance(v, (int, float))) + " |" for s in report["steps"]]
    if report.get("reconstruction"):
        lines += ["", *reconstruction_lines(report["reconstruction"])]
    if report.get("support_sets"):
        lines += ["", "## Support sets (1-based (i, j): unit i of layer l, unit j of layer l-1)", ""]
        lines += [f"- {s}" for s in report["support_sets"]]
    if report.get("notes") or degradation_hints(report):
        lines += ["", "## Warnings", ""]
        lines += [f"- {n}" for n in report.get("notes", [])]
        lines += [f"- {h.removeprefix('hint: ')}" for h in degradation_hints(report)]
    if size_line(report):
        lines += ["", size_line(report).replace("size: ", "Size: ")]
    if report.get("quantization"):
        lines += ["", "## Quantization", "", *(f"- {line.strip()}"
                                               for line in quantization_lines(report))]
    if report.get("vae"):
        lines += ["", "## VAE", "", f"- {vae_line(report['vae']).removeprefix('vae: ')}",
                  f"- link game: {report['vae']['game']}"]
    if "runtime_max_abs_diff" in report:
        lines += ["", f"NumPy runtime vs PyTorch on the test split: max |diff| = "
                  f"{report['runtime_max_abs_diff']:.2e}"]
    return "\n".join(lines) + "\n"


@dataclass
class CompressReport:
    """What ``compress`` did and what it cost, as typed fields (the statistics object; compare
    NNCF's ``SparsifiedModelStatistics``). ``to_dict()`` is report.json, ``str()`` the console
    summary and ``markdown()`` report.md; ``report["key"]`` reads the JSON view, so code that
    treated the report as a dict keeps working."""

    network: str  # the model as loaded, e.g. "autoencoder 64-32-8-32-64 [...]"
    source: dict  # model / data paths (relative to the report) and provenance
    method: str  # shap-sae, magnitude, random, lap, or neuron:...
    scoring: dict | None  # the scoring summary (estimators, seconds, memory) or {"from": ...}
    importance_level: float | None  # m (meaningful for SHAP-SAE)
    sparsity: float  # eta of the written network
    links_total: int
    links_kept: int
    original_dense_fp32_bytes: int  # the original model's weights + biases as dense fp32
    input_dim: int
    output_dim: int
    layers: list[dict]  # per layer: shape, links, links_kept, units_kept, sparsity
    unused_inputs: list[int]  # 0-based input positions the pruned model never reads
    constant_outputs: dict[int, float]  # 0-based output position -> its constant value
    target_sparsity: float | None
    import_: dict  # what loading did to a user's model (folded BatchNorms, latent chosen)
    notes: list[str]  # warnings about the pruned network
    finetune_epochs: int
    finetune_history: list[dict]
    metrics: dict  # {"before": {...}, "after": {...}} on the test split
    granularity: str  # "link", "neuron" or "neuron,link"
    links_original: int
    sparsity_vs_original: float
    edgeprune_version: str = ""
    network_pruned: str | None = None  # neuron pruning changes the shapes
    neuron_walk: dict | None = None
    support_sets: list[str] | None = None  # small networks only
    quantization: dict | None = None  # --quantize: metrics in float32 and quantized, the guard
    artifacts: dict = field(default_factory=dict)  # per format: bytes, max |diff| vs PyTorch
    export_notes: list[str] = field(default_factory=list)
    runtime_max_abs_diff: float | None = None
    seconds: float | None = None
    steps: list[dict] | None = None  # gradual pruning (--steps N): one record per step
    vae: dict | None = None  # a VAE: likelihood, beta, the log-variance head's pruning
    finetune_recipe: dict | None = None  # --distill / --finetune-schedule when not the plain one
    allocation: str | None = None  # --allocation global (None: the paper's per-layer level m)
    reconstruction: dict | None = None  # --reconstruct: ridge, samples, per-layer errors

    def to_dict(self) -> dict:
        """report.json's content (optional parts only when present)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _OPTIONAL_KEYS and value is None:
                continue
            out["import" if f.name == "import_" else f.name] = value
        return out

    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def get(self, key: str, default=None):
        return self.to_dict().get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.to_dict()

    def __str__(self) -> str:
        return format_summary(self.to_dict())

    def markdown(self) -> str:
        return format_markdown(self.to_dict())


_OPTIONAL_KEYS = {"network_pruned", "neuron_walk", "support_sets", "runtime_max_abs_diff",
                  "seconds", "quantization", "steps", "vae", "finetune_recipe", "allocation",
                  "reconstruction"}



def record_path(path: str | os.PathLike, outdir: str | os.PathLike) -> str:
    """A path as report.json records it: relative to the report's directory, so the record
    holds wherever the command is run from (and when the whole tree moves)."""
    return os.path.relpath(Path(path).resolve(), Path(outdir).resolve())


def record_data_spec(spec: str, outdir: str | os.PathLike) -> str:
    prefix = next((p for p in PATH_SPECS if spec.startswith(p)), None)
    return prefix + record_path(spec[len(prefix):], outdir) if prefix else spec


def resolve_recorded(report: dict, report_dir: str | os.PathLike) -> dict:
    """``report`` with the paths it records made usable from the current directory: each
    relative path is taken relative to ``report_dir`` (where report.json lives)."""
    base = Path(report_dir)

    def resolve(path: str) -> str:
        return path if os.path.isabs(path) else os.path.normpath(base / path)

    out = dict(report)
    source = dict(out.get("source") or {})
    if isinstance(source.get("model"), str):
        source["model"] = resolve(source["model"])
    data = source.get("data")
    prefix = next((p for p in PATH_SPECS if isinstance(data, str) and data.startswith(p)), None)
    if prefix:
        source["data"] = prefix + resolve(data[len(prefix):])
    out["source"] = source
    scoring = out.get("scoring")
    if isinstance(scoring, dict) and isinstance(scoring.get("from"), str):
        out["scoring"] = {**scoring, "from": resolve(scoring["from"])}
    return out


def write_json(path: str | os.PathLike, obj: dict) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
