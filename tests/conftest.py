"""Shared test configuration."""

import os

# One BLAS/OpenMP thread per process: the suite runs under pytest-xdist on small machines,
# where each worker spawning threads for every core makes small matmuls far slower.
# Set before any worker imports numpy or torch (workers start after this file loads).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

pytest_plugins = ["pytester"]
