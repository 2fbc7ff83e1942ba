"""The multi-threaded CPU path: a serial loop run on chunks from a thread pool.

The loops release the GIL, so chunks of one array run truly in parallel.  The
calling thread works on the first chunk itself while the pool's threads take
the others.  The pool is created on first use and created again in a forked
child, where the parent's threads do not exist.
"""

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

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


_pool = None
_pool_pid = None
_pool_size = 0
_pool_lock = ForkSafeLock()

# Chunk boundaries fall on multiples of this many elements (a 64-byte cache
# line of the smallest itemsize), so no two threads write the same line.
_ALIGN = 64


def _executor(workers):
    global _pool, _pool_pid, _pool_size
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid() or _pool_size < workers:
            # A smaller pool is not shut down: another thread may still be
            # submitting to it.  Once unreferenced, its idle threads exit.
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="fastrelu")
            _pool_pid, _pool_size = os.getpid(), workers
        return _pool


_local = threading.local()


@contextlib.contextmanager
def limit(threads):
    """Within the block, calls made by this thread use at most *threads*
    threads (``None``: no limit beyond :func:`fastrelu.get_num_threads`)."""
    previous = getattr(_local, "limit", None)
    _local.limit = threads
    try:
        yield
    finally:
        _local.limit = previous


def n_chunks(name, n):
    """How many threads kernel *name* on *n* elements is worth (1: run serially)."""
    if n < config.PARALLEL_MIN_SIZE[name]:
        return 1
    threads = config.get_num_threads()
    cap = getattr(_local, "limit", None)
    if cap is not None:
        threads = min(threads, cap)
    return max(1, min(threads, n // config.PARALLEL_MIN_CHUNK))


def run(name, kernel, n, arrays, scalars):
    """Run ``kernel(*arrays, *scalars)`` over 1-D arrays of length *n*."""
    run_chunks(kernel, n, arrays, scalars, n_chunks(name, n))


def run_chunks(kernel, n, arrays, scalars, chunks):
    """Run ``kernel(*arrays, *scalars)`` on *chunks* pieces of the arrays at once."""
    if chunks <= 1:
        kernel(*arrays, *scalars)
        return
    step = -(-n // chunks)
    step = -(-step // _ALIGN) * _ALIGN
    bounds = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    pool = _executor(len(bounds) - 1)
    futures = [pool.submit(kernel, *[a[lo:hi] for a in arrays], *scalars) for lo, hi in bounds[1:]]
    lo, hi = bounds[0]
    try:
        kernel(*[a[lo:hi] for a in arrays], *scalars)
    finally:
        for fut in futures:
            fut.result()
