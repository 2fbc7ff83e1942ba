"""The thread settings that compiled code reads, and the per-thread cap.

The thread pool itself is :mod:`fastrelu._pool`, and the plan of a call
(how many threads, what chunks) is made in compiled code by
``_pool.plan``, from a few words this module keeps in step with
``fastrelu.config``: the thread count of :func:`fastrelu.set_num_threads`,
``config.PARALLEL_MIN_CHUNK``, the workers that exist, and how many Python
threads are inside :func:`limit` (Dask tasks run their block on one thread).
Plain Python and NumPy, so that importing fastrelu imports no Numba.
"""

import _thread
import contextlib
import os
import threading

import numpy as np

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

    def acquire(self, timeout=-1):
        return self._lock.acquire(timeout=timeout)

    def release(self):
        self._lock.release()

    def __enter__(self):
        self._lock.acquire()

    def __exit__(self, *exc_info):
        self._lock.release()


def uninterrupted(function, *args):
    """``function(*args)``, run to its end even if a ``KeyboardInterrupt``
    (or another signal handler's exception) comes while it runs.

    Python runs signal handlers on the main thread only, between any two
    bytecodes, so a ``with lock:`` there, in fastrelu or in Numba and
    llvmlite, can be left with its lock taken.  On the main thread the
    function therefore runs on a helper thread while the main thread waits:
    an interrupt ends the wait and reaches the caller at once; the function
    finishes in the background, releasing its locks, and what it made is
    kept.  On other threads it is simply called.
    """
    if threading.current_thread() is not threading.main_thread():
        return function(*args)
    outcome = []
    finished = _thread.allocate_lock()
    finished.acquire()

    def target():
        try:
            outcome.append((True, function(*args)))
        except BaseException as error:  # handed to the caller below
            outcome.append((False, error))
        finally:
            finished.release()

    # Not threading.Thread: its start() waits on a Condition, which an
    # interrupt can leave half released ("release unlocked lock").  Starting
    # the thread is one C call, and the wait one interruptible acquire.
    _thread.start_new_thread(target, ())
    finished.acquire()
    done, value = outcome[0]
    if done:
        return value
    raise value


# Chunks per thread: a thread that starts late (a worker waking up) still
# finds work, and one that is slowed down holds up the call by less.
CHUNKS_PER_THREAD = 4

# The words compiled code reads (int64, one cache line): the thread count,
# the least chunk, the threads inside limit(), the workers that exist, the
# chunks per thread, the output size in bytes from which to stream.
THREADS, MIN_CHUNK, CAPPED, WORKERS, CHUNKS, STREAM_FROM = 0, 1, 2, 3, 4, 5
settings = np.zeros(8, np.int64)

# What a call asks of the entry's planning: ``threshold | cap << CAP_SHIFT``,
# split across threads from *threshold* elements, on at most *cap* threads
# (0: no cap given, NO_CAP: this thread has none).
CAP_SHIFT = 40
NO_CAP = config.MAX_THREADS


def request(threshold, cap=0):
    """The plan argument of a compiled entry (see the constants above)."""
    return min(threshold, (1 << CAP_SHIFT) - 1) | cap << CAP_SHIFT


def sync():
    """Copy the settings of ``fastrelu.config`` into :data:`settings`."""
    settings[THREADS] = config.get_num_threads()
    settings[MIN_CHUNK] = max(1, config.PARALLEL_MIN_CHUNK)
    settings[CHUNKS] = CHUNKS_PER_THREAD
    settings[STREAM_FROM] = config.STREAM_MIN_BYTES


sync()
config._listeners.append(sync)


class _Local(threading.local):
    limit = None  # the cap set by limit(); a class attribute, so reading it never raises


_local = _Local()
_capped = 0
_capped_lock = threading.Lock()


def _count_capped(change):
    global _capped
    with _capped_lock:
        _capped += change
        settings[CAPPED] = _capped


def cap():
    """This thread's cap, as :func:`request` takes it."""
    return NO_CAP if _local.limit is None else max(1, min(_local.limit, NO_CAP))


@contextlib.contextmanager
def limit(threads):
    """Within the block, calls made by this thread use at most *threads*
    threads (``None``: no limit beyond :func:`fastrelu.get_num_threads`).

    While any thread is inside, calls that would split across threads
    first come back to Python to read their own thread's cap.
    """
    previous = _local.limit
    _local.limit = threads
    counted = threads is not None
    if counted:
        _count_capped(1)
    try:
        yield
    finally:
        _local.limit = previous
        if counted:
            _count_capped(-1)
