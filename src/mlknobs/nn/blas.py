"""How many threads the BLAS behind NumPy's matrix products may use."""

from __future__ import annotations


def blas_threads(count: int):
    """A context manager that pins the BLAS thread pool to `count` threads.

    One is the default everywhere: on shared 2-core machines two BLAS threads were measured 30-90x
    slower than one whenever another process was busy.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=count, user_api="blas")
