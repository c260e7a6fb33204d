"""``edgeprune bench``, the board side (numpy/scipy/stdlib only, like the rest of the runtime).

:mod:`.harness` (timing, statistics, environment, BLAS threads, the bench loop and the
numpy/scipy runtime as a backend), :mod:`.costs` (static per-layer figures), :mod:`.energy`
(the energy proxy and its profiles) and :mod:`.calibrate` (dense/CSR crossover on this device,
saved as the kernel profile that :mod:`edgeprune.runtime.kernel_profile` reads). The host side
(optional backends, orchestration, report, plot) is :mod:`edgeprune.bench`.
"""
