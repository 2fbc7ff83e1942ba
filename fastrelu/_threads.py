"""How many threads a CPU call uses, and in what chunks.

The thread pool itself is :mod:`fastrelu._pool`; this module holds the
decisions, in plain Python so that importing fastrelu imports no Numba: the
thread count of :func:`fastrelu.set_num_threads`, a per-thread cap (Dask
tasks run their block on one thread), and the sizes from which each kernel
is worth splitting (``config.PARALLEL_MIN_SIZE``).
"""

import contextlib
import os
import threading

from . import config


class ForkSafeLock:
    """A lock that a forked child gets back unlocked, even if another thread
    of the parent held it at the moment of the fork."""

    def __init__(self):
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # POSIX only
            os.register_at_fork(after_in_child=self._renew)

    def _renew(self):
        self._lock = threading.Lock()

    def __enter__(self):
        self._lock.acquire()

    def __exit__(self, *exc_info):
        self._lock.release()


# Chunk boundaries fall on multiples of this many elements (a 64-byte cache
# line of the smallest itemsize), so no two threads write the same line.
_ALIGN = 64
# Chunks per thread: a thread that starts late (a worker waking up) still
# finds work, and one that is slowed down holds up the call by less.
CHUNKS_PER_THREAD = 4


class _Local(threading.local):
    limit = None  # the cap set by limit(); a class attribute, so reading it never raises


_local = _Local()


@contextlib.contextmanager
def limit(threads):
    """Within the block, calls made by this thread use at most *threads*
    threads (``None``: no limit beyond :func:`fastrelu.get_num_threads`)."""
    previous = _local.limit
    _local.limit = threads
    try:
        yield
    finally:
        _local.limit = previous


def n_threads(name, n):
    """How many threads kernel *name* on *n* elements is worth (1: run serially)."""
    if n < config.PARALLEL_MIN_SIZE[name]:
        return 1
    threads = config.get_num_threads()
    cap = _local.limit
    if cap is not None and cap < threads:
        threads = cap
    most = n // config.PARALLEL_MIN_CHUNK
    return threads if threads <= most else max(1, most)


def plan(name, n):
    """The plan of kernel *name* on *n* elements, as the compiled entries
    take it: ``threads | step << 16``, to run on *threads* threads in chunks
    of *step* elements."""
    threads = n_threads(name, n)
    if threads == 1:
        return 1 | n << 16
    chunks = threads * CHUNKS_PER_THREAD
    most = n // config.PARALLEL_MIN_CHUNK
    if chunks > most:
        chunks = max(threads, most)
    step = -(-n // chunks)
    return threads | -(-step // _ALIGN) * _ALIGN << 16
