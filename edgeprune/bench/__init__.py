"""``edgeprune bench``, the host side: options and orchestration (:mod:`.runner`), the optional
backends ONNX Runtime, LiteRT and torch (:mod:`.backends`, imported lazily), the JSON/Markdown
report (:mod:`.report`) and the plot (:mod:`.plot`, matplotlib).

The board side, which a board with the base install runs (timing, statistics, the bench loop
over the numpy/scipy runtime, static figures, the energy proxy and kernel calibration), is
:mod:`edgeprune.runtime.bench` (numpy/scipy/stdlib only). Importing this package imports no
torch, ONNX, LiteRT or matplotlib.
"""

from edgeprune.bench.runner import (
    BenchOptions,
    calibrate_device,
    kernel_profile_summary,
    parse_batches,
    run,
    summary_lines,
    write_outputs,
    write_plot,
)

__all__ = [
    "BenchOptions",
    "calibrate_device",
    "kernel_profile_summary",
    "parse_batches",
    "run",
    "summary_lines",
    "write_outputs",
    "write_plot",
]
