"""Compiles the CPU loops lazily, caches them on disk, and hands them out.

Nothing is compiled at import time, and Numba itself is imported only on the
first call: :func:`get` compiles a loop of :mod:`fastrelu._loops` for one
dtype on first use, or loads it from Numba's on-disk cache.  The loops are
serial and release the GIL; :mod:`fastrelu._threads` runs them on chunks of
a large array from several threads at once.

Why not ``parallel=True``: Numba's cache has races for parallel functions
(numba issues #4807, #10128), and its threading layers are either not
fork-safe (GNU OpenMP) or abort when two threads enter parallel code at once
(workqueue).  Serial ``nogil`` loops are cacheable and safe under threads and
fork, so the parallelism lives in a thread pool of our own instead.
"""

import contextlib
import os

from ._threads import ForkSafeLock

_JIT_OPTIONS = dict(nogil=True, error_model="numpy", boundscheck=False)

_dispatchers = {}  # loop name -> Numba dispatcher
_compiled = {}  # (loop name, dtype) -> compiled entry point
_lock = ForkSafeLock()


def _dispatcher(name, func):
    """The Numba dispatcher of loop *name*, made on first use."""
    import numba

    disp = _dispatchers.get(name)
    if disp is None:
        if os.environ.get("FASTRELU_CACHE", "1") == "0":
            disp = numba.njit(**_JIT_OPTIONS)(func)
        else:
            try:
                disp = numba.njit(cache=True, **_JIT_OPTIONS)(func)
            except RuntimeError:
                # No writable cache location ("no locator available"):
                # compile in memory, as Numba does without cache=True.
                disp = numba.njit(**_JIT_OPTIONS)(func)
        _stamp_with_dependencies(disp)
        _dispatchers[name] = disp
    return disp


def _stamp_with_dependencies(disp):
    """Let a change to the formulas or the maths they inline invalidate the cache.

    Numba stamps a cache index with the modification time and size of the file
    that defines the function, here ``_loops.py``, and not of the modules whose
    code it inlined; add theirs to the stamp it compares.
    """
    cache_file = getattr(getattr(disp, "_cache", None), "_cache_file", None)
    if cache_file is None or not hasattr(cache_file, "_source_stamp"):
        return  # no disk cache, or a Numba whose cache works differently
    from . import _formulas, _libm

    stamps = [cache_file._source_stamp]
    for module in (_formulas, _libm):
        st = os.stat(module.__file__)
        stamps.append((st.st_mtime, st.st_size))
    cache_file._source_stamp = tuple(stamps)


@contextlib.contextmanager
def _cache_file_lock(disp):
    """Serialise compile-and-save across processes sharing one cache folder.

    Numba names a new cache data file after the entries of the index it read;
    two processes compiling different signatures of one function at once can
    leave an index entry pointing at the other signature's code.
    """
    cache = getattr(disp, "_cache", None)
    path = getattr(cache, "cache_path", None)
    fd = None
    try:
        import fcntl

        fd = os.open(os.path.join(path, "fastrelu.lock"), os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError, TypeError):
        # No cache on disk, no POSIX locks, or a file system without flock:
        # go on unserialised, as Numba itself does.
        pass
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def get(name, dtype):
    """Return the compiled loop *name* for arrays of *dtype* (a NumPy dtype)."""
    key = (name, dtype)
    kernel = _compiled.get(key)
    if kernel is not None:
        return kernel
    with _lock:
        kernel = _compiled.get(key)
        if kernel is None:
            import numba

            from ._loops import LOOPS

            func, n_arrays, n_scalars = LOOPS[name]
            T = numba.from_dtype(dtype)
            sig = (T[::1],) * n_arrays + (T,) * n_scalars
            disp = _dispatcher(name, func)
            with _cache_file_lock(disp):
                kernel = disp.compile(sig)
            _compiled[key] = kernel
    return kernel
