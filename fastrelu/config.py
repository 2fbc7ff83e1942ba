"""The few tunables of fastrelu's CPU path.

``PARALLEL_MIN_SIZE`` gives, per kernel, the number of elements from which a
call is split across threads, and ``PARALLEL_MIN_CHUNK`` the least work given
to one thread; both were chosen by measurement (``docs/performance.md``):
handing chunks to the pool costs tens of microseconds, so memory-bound kernels
split only arrays far larger than the compute-bound ones do.  The number of
threads defaults to the CPUs this process may run on, or to the environment
variable ``FASTRELU_NUM_THREADS``.  ``DASK_BLOCK_THREADS`` caps the threads
of each task of a Dask graph; it is read when the graph is built.
"""

import operator
import os
import warnings

PARALLEL_MIN_SIZE = {
    "relu": 1 << 21,
    "relu_backward": 1 << 21,
    "softplus": 1 << 18,
    "softplus_backward": 1 << 20,
}
PARALLEL_MIN_CHUNK = 1 << 16

# Threads each Dask task may use for its chunk (None: as many as any call).
# Dask already runs one task per core; the measurement is in docs/dask.md.
DASK_BLOCK_THREADS = 1


def _default_threads():
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    env = os.environ.get("FASTRELU_NUM_THREADS")
    if env:
        try:
            if int(env) >= 1:
                return int(env)
        except ValueError:
            pass
        warnings.warn(
            f"ignoring FASTRELU_NUM_THREADS={env!r}: not a positive integer; using {cpus} threads",
            RuntimeWarning,
            stacklevel=2,
        )
    return cpus


_num_threads = _default_threads()


def get_num_threads():
    """Return the number of threads fastrelu uses for large arrays."""
    return _num_threads


def set_num_threads(n):
    """Set the number of threads fastrelu uses for large arrays.

    Parameters
    ----------
    n : int
        A positive number of threads; 1 makes every call serial.
    """
    global _num_threads
    try:
        value = operator.index(n)
    except TypeError:
        value = 0
    if isinstance(n, bool) or value < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    _num_threads = value
