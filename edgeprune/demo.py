"""``make demo``: train on the embedded digits data, compress at m = 0.8, run the bundle.

Run as ``python -m edgeprune.demo [OUTDIR]``; everything it writes goes to OUTDIR
(default ``demo-out/``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from edgeprune import runtime
    from edgeprune.compress import CompressOptions, compress
    from edgeprune.data import load_dataset
    from edgeprune.torch_network import torch_forward
    from edgeprune.workflows import train_autoencoder

    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "demo-out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print("== 1. train a 64-32-8-32-64 autoencoder on scikit-learn's digits (8x8 images)")
    print(train_autoencoder("digits", hidden="32,8", epochs=60, seed=0, output=out / "model.pt",
                            quiet=True))
    print("\n== 2. score every link with Shapley values, prune at importance level m = 0.8, "
          "fine-tune 10 epochs")
    from edgeprune.checkpoint import load_network

    net = load_network(out / "model.pt")
    ds = load_dataset("digits", seed=0)
    result = compress(net, ds, out / "compressed",
                      CompressOptions(importance_level=0.8, samples=256, seed=0, quiet=True,
                                      finetune_epochs=10,
                                      # the paper's m = 0.8 example (its eq. 3 scores), as the
                                      # README shows it; compress's default rule is hybrid
                                      score_rule="paper", finetune_lr=1e-3,
                                      reconstruct=False,
                                      provenance={"model": str(out / "model.pt")}))
    print(result.report)
    scoring = result.report.scoring
    print("scoring: " + ", ".join(f"layer {r['layer']} {r['estimator']} {r['seconds']:.2f}s"
                                  for r in scoring["layers"]))
    print("\n== 3. run model.npz in the NumPy/SciPy runtime (no torch) and compare with PyTorch")
    model = runtime.load(out / "compressed" / "model.npz")
    y_rt = model(ds.x_test)
    y_pt = torch_forward(result.network, ds.x_test)
    print(f"runtime output {y_rt.shape} on {len(ds.x_test)} test images; "
          f"max |runtime - PyTorch| = {np.max(np.abs(y_rt - y_pt)):.2e}")
    print(f"bundle: {model.nnz} non-zero weights; layers: "
          + ", ".join(f"{row.shape[0]}x{row.shape[1]}/{row.kernel}"
                      for row in model.layers))
    written = " ".join(sorted(p.name for p in (Path(out) / "compressed").iterdir()))
    print(f"\nartifacts in {out}/compressed: {written} "
          f"({time.perf_counter() - t0:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
