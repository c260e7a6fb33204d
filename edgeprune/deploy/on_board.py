"""What the deployed runtime runs on the board: ``python -m edgeprune.deploy.on_board verify|bench``.

It runs inside the deployment's venv (the wheel of this project, the distribution's
numpy/scipy), imports the torch-free runtime (plus ONNX Runtime / LiteRT when installed there)
and prints one JSON object on stdout, which ``deploy`` / ``bench --remote`` read back on the host
(as untrusted data).

* ``verify DIR``: run every artifact of the deployment on ``verify/inputs.npy`` and compare with
  the host's outputs shipped beside it; ``ok`` when every max |diff| <= tolerance. Writes
  ``DIR/verify.json``.
* ``bench DIR``: the latency harness of :mod:`edgeprune.runtime.bench.harness` on the deployed
  artifacts, plus load time, first-inference time and peak RSS per artifact, measured power
  where ``vcgencmd pmic_read_adc`` exists (Raspberry Pi 5), and ``--calibrate`` (the dense/CSR
  crossover saved as ``DIR/kernel_profile.json``, which verify/bench then use).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import first_line

MANIFEST = "manifest.json"


def _manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / MANIFEST).read_text())


def _kernel_profile(directory: Path) -> Any:
    path = directory / "kernel_profile.json"
    return str(path) if path.is_file() else None


def load_artifact(path: Path, fmt: str, kernel_profile: Any = None, threads: int = 1):
    """``(run(x), input width, runtime name)`` for an artifact, with the runtime of its format."""
    if fmt == "npz":
        from edgeprune.runtime import load

        model = load(path, profile=kernel_profile)
        return model, model.input_dim, "edgeprune.runtime"
    from edgeprune.bench.backends import LiteRTBackend, OnnxRuntimeBackend

    backend = OnnxRuntimeBackend() if fmt == "onnx" else LiteRTBackend()
    ok, note = backend.available()
    if not ok:
        raise RuntimeError(f"{note} on the board; ship its aarch64 wheels with --wheelhouse")
    loaded = backend.load(path, threads)
    return loaded.run, loaded.input_dim, backend.name


def verify(directory: Path, tolerance: float) -> dict[str, Any]:
    manifest = _manifest(directory)
    x = np.load(directory / manifest["verify"]["inputs"], allow_pickle=False)
    rows, ok = [], True
    for rel, fmt in manifest["artifacts"].items():
        expected = np.load(directory / manifest["verify"]["outputs"][rel], allow_pickle=False)
        try:
            run, _, runtime = load_artifact(directory / rel, fmt, _kernel_profile(directory))
            got = np.asarray(run(x), dtype=np.float64)
            diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else None
        except Exception as exc:  # noqa: BLE001 - reported per artifact
            rows.append({"artifact": rel, "format": fmt, "ok": False,
                         "error": first_line(exc)})
            ok = False
            continue
        good = diff is not None and diff <= tolerance
        ok = ok and good
        rows.append({"artifact": rel, "format": fmt, "runtime": runtime, "max_abs_diff": diff,
                     "ok": good, "rows": int(x.shape[0]),
                     **({} if diff is not None else {"error": f"output shape {got.shape} "
                                                     f"!= {expected.shape}"})})
    result = {"ok": ok, "tolerance": tolerance, "artifacts": rows,
              "numpy": np.__version__, "python": sys.version.split()[0]}
    if not ok:
        bad = next(r for r in rows if not r["ok"])
        result["error"] = (f"{bad['artifact']}: " + (bad.get("error") or
                           f"max |diff| {bad['max_abs_diff']:.2e} > {tolerance:g}"))
    (directory / "verify.json").write_text(json.dumps(result, indent=2))
    return result


def _startup(path: Path, fmt: str, kernel_profile: Any, threads: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    run, width, _ = load_artifact(path, fmt, kernel_profile, threads)
    t1 = time.perf_counter()
    run(np.random.default_rng(0).random((1, width), dtype=np.float32))
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "first_inference_s": t2 - t1}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def bench(directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    from edgeprune.runtime.bench import power
    from edgeprune.runtime.bench.harness import RuntimeBackend, run_benchmark

    manifest = _manifest(directory)
    artifacts = [(directory / rel, fmt) for rel, fmt in manifest["artifacts"].items()]
    batches = [int(b) for b in args.batch.split(",")]
    calibration = None
    if args.calibrate:
        from edgeprune.runtime.bench.calibrate import DEFAULT_BATCHES, calibrate_and_save
        from edgeprune.runtime.bundle import read_bundle

        shapes = [layer.shape for p, f in artifacts if f == "npz"
                  for layer in read_bundle(p).layers]
        profile, target = calibrate_and_save(directory / "kernel_profile.json",
                                             shapes=shapes or None,
                                             batches=sorted({*DEFAULT_BATCHES, *batches}),
                                             threads=args.threads)
        calibration = {"path": str(target),
                       "crossover": [{"batch": b, "density": d} for b, d in profile.crossover]}
    kernel_profile = _kernel_profile(directory)
    startup = {str(p): _startup(p, f, kernel_profile, args.threads) for p, f in artifacts}
    backends: list[Any] = [RuntimeBackend(k, kernel_profile) for k in ("auto", "csr", "dense")]
    formats = {f for _, f in artifacts}
    if formats & {"onnx", "tflite"}:
        from edgeprune.bench.backends import LiteRTBackend, OnnxRuntimeBackend

        backends += [b for b in (OnnxRuntimeBackend(), LiteRTBackend())
                     if set(b.formats) & formats]

    def timed() -> dict[str, Any]:
        return run_benchmark(artifacts, backends, batches=batches, warmup=args.warmup,
                             runs=args.runs, min_time=args.min_time, threads=args.threads,
                             energy_profile=args.profile, seed=0)

    if power.read_power() is not None:
        results, readings = power.measure_block(timed)
        rows = [r for r in results["latency"] if r["backend"] == "edgeprune-auto"]
        results["measured_energy"] = [
            {"artifact": r["artifact"], "backend": r["backend"],
             **(power.measured_energy(readings["idle_w"], readings["load_w"], r["mean_us"],
                                      r["batch"], readings["readings"]) or {})}
            for r in rows]
        results["measured_power"] = {**readings, "source": power.SOURCE,
                                     "note": "power averaged over the whole timed run"}
    else:
        results = timed()
        results["measured_power"] = None
    results["startup"] = startup
    results["peak_rss_bytes"] = peak_rss_bytes()
    results["calibration"] = calibration
    results["deployment"] = {"dir": str(directory), "name": manifest.get("name")}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.deploy.on_board")
    sub = parser.add_subparsers(dest="step", required=True)
    v = sub.add_parser("verify")
    v.add_argument("directory")
    v.add_argument("--tolerance", type=float, default=1e-5)
    b = sub.add_parser("bench")
    b.add_argument("directory")
    b.add_argument("--batch", default="1,32")
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--runs", type=int, default=100)
    b.add_argument("--min-time", type=float, default=0.5)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--profile", default="generic45nm")
    b.add_argument("--calibrate", action="store_true")
    args = parser.parse_args(argv)
    directory = Path(os.path.expanduser(args.directory)).resolve()
    try:
        if args.step == "verify":
            result = verify(directory, args.tolerance)
        else:
            result = bench(directory, args)
    except Exception as exc:  # noqa: BLE001 - one JSON line, read by the host
        result = {"ok": False, "error": f"{type(exc).__name__}: {first_line(exc)}"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result.get("ok", True) or "artifacts" in result else 1


if __name__ == "__main__":
    sys.exit(main())
