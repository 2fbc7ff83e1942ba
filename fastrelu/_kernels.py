"""Compiles the CPU code lazily, caches it on disk, and runs it.

Nothing is compiled at import time, and Numba itself is imported only on the
first call.  Three kinds of compiled code exist (:mod:`fastrelu._loops`,
:mod:`fastrelu._pool`), each compiled on first use and stored in Numba's
on-disk cache, or loaded from there:

- a chunk function per kernel, dtype and folded variant (the kernel's loop,
  a C function that any thread can call through its address);
- an entry per number of arrays, dtype and number of dimensions (what
  Python calls);
- the workers' wait loop, and the function that ends a worker.

All of it is serial code: the threads are fastrelu's own
(:mod:`fastrelu._pool`).  Numba's ``parallel=True`` is not used: its
on-disk cache has races for parallel functions (numba issues #4807,
#10128), and its threading layers are either not fork-safe (GNU OpenMP),
abort when two threads enter parallel code at once (workqueue), or must be
installed and found (TBB).
"""

import contextlib
import functools
import hashlib
import os
import time
import warnings
from typing import Any

from . import _threads, config
from ._threads import ForkSafeLock

# The entry's answers (see fastrelu._loops.entry).
DONE, UNSUPPORTED, NEEDS_PLAN = 0, 1, 2

_JIT_OPTIONS = dict(nogil=True, error_model="numpy", boundscheck=False)

# key -> compiled code: a chunk function's address, an entry point, the wait loop
_compiled: dict[Any, Any] = {}
_keep: list[Any] = []  # the compiled objects behind those addresses
# What was compiled or loaded, in order: {"key": str, "loaded": from the
# cache or compiled, "cache_path": the cache folder or None}.
log: list[dict[str, Any]] = []
_lock = ForkSafeLock()


# A fork waits for a compile in progress in another thread to end: a child
# forked in the middle of one would inherit Numba's compiler lock and the
# cache folder's lock held by a thread it does not have, and its own first
# compile would wait for them forever.  (The wait is bounded, in case the
# forking thread itself were compiling.)
_held_for_fork = False


def _before_fork():
    global _held_for_fork
    _held_for_fork = _lock.acquire(timeout=config.CACHE_LOCK_SECONDS)


def _after_fork_in_parent():
    global _held_for_fork
    if _held_for_fork:
        _held_for_fork = False
        _lock.release()


def _after_fork_in_child():
    # A copy of a cache-folder lock's descriptor would hold that lock for
    # the child even after the parent's thread let it go.
    for fd in list(_lock_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    _lock_fds.clear()


_lock_fds: set[int] = set()  # descriptors of the cache folder's lock file held now

if hasattr(os, "register_at_fork"):  # POSIX only; the child renews _lock itself
    # Hooks run before a fork in the reverse order of their registration:
    # logging's, which takes logging's lock (that a compiling thread may
    # need), must run after this one has waited for the compile to end.
    import logging  # noqa: F401

    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )


def _stamp_with_dependencies(cache):
    """Let a change to any module of compiled code invalidate the cache.

    Numba stamps a cache index with the modification time and size of the file
    that defines the function, and not of the modules whose code it inlined;
    add a digest of the contents of all of them to the stamp it compares, so
    that an edit which keeps a file's size and time is seen too.
    """
    cache_file = getattr(cache, "_cache_file", None)
    if cache_file is None or not hasattr(cache_file, "_source_stamp"):
        return  # no disk cache, or a Numba whose cache works differently
    cache_file._source_stamp = (cache_file._source_stamp, _sources_digest())


@functools.cache
def _sources_digest():
    """A digest of the source of every module compiled code is made from."""
    from . import _formulas, _libm, _loops, _maskloops, _native, _pool

    digest = hashlib.sha256()
    for module in (_formulas, _libm, _loops, _maskloops, _native, _pool):
        with open(module.__file__, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _caching():
    return os.environ.get("FASTRELU_CACHE", "1") != "0"


class CacheLockTimeout(Exception):
    """The cache folder stayed locked by another process too long."""


@contextlib.contextmanager
def _cache_file_lock(cache):
    """Serialise compile-and-save across processes sharing one cache folder.

    Numba names a new cache data file after the entries of the index it read;
    two processes compiling different signatures of one function at once can
    leave an index entry pointing at the other signature's code.  Waits at
    most ``config.CACHE_LOCK_SECONDS`` for a process that holds the lock
    (one stopped in a debugger holds it for good), then raises
    :class:`CacheLockTimeout`.
    """
    path = getattr(cache, "cache_path", None)
    fd = None
    try:
        import fcntl

        fd = os.open(os.path.join(path, "fastrelu.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        _lock_fds.add(fd)
    except (ImportError, OSError, TypeError):
        # No cache on disk, no POSIX locks, or a lock file that cannot be
        # made: go on unserialised, as Numba itself does.
        fd = None
    if fd is not None:
        deadline = time.monotonic() + config.CACHE_LOCK_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    _lock_fds.discard(fd)
                    os.close(fd)
                    raise CacheLockTimeout(path) from None
                time.sleep(0.02)
            except OSError:  # a file system without flock
                break
    try:
        yield
    finally:
        if fd is not None:
            _lock_fds.discard(fd)
            os.close(fd)  # closing releases the lock


def _require_the_compiler():
    from numba.core import config as numba_config

    if numba_config.DISABLE_JIT:
        raise RuntimeError(
            "fastrelu runs compiled code only, and NUMBA_DISABLE_JIT=1 switches Numba's compiler off: "
            "unset NUMBA_DISABLE_JIT to use fastrelu"
        )


_in_memory_why: list[str] | None = []  # why compiled code is not cached, until it is said


def _in_memory(fault, cache):
    """Note that compiled code is not cached, and why: said once per process,
    by :func:`_say_in_memory` on the calling thread."""
    path = getattr(cache, "cache_path", None)
    if isinstance(fault, CacheLockTimeout):
        why = f"another process held the lock of {path} for {config.CACHE_LOCK_SECONDS:g} s"
    else:
        why = f"{path} could not be read or written ({type(fault).__name__}: {fault})"
    if _in_memory_why is not None:
        _in_memory_why.append(why)


def _say_in_memory():
    global _in_memory_why
    if _in_memory_why:
        why, _in_memory_why = _in_memory_why[0], None
        warnings.warn(
            f"fastrelu compiles in memory, without its cache: {why}",
            RuntimeWarning,
            stacklevel=config._outside_the_package(),
        )


def _forget(cache):
    """Remove the cache index of *cache*'s function: a bad entry is then
    compiled again and saved anew."""
    index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    if index is not None:
        with contextlib.suppress(OSError):
            os.remove(index)


def _cached_compile(cache, compile_cached, compile_in_memory):
    """``compile_cached()`` under the cache folder's lock, where a cache is
    in use.  A cache that cannot be read (a corrupt or foreign entry) is
    forgotten and compiled again; one that cannot be written, or whose lock
    another process holds too long, gives way to ``compile_in_memory()``.
    Returns what the successful one returned and whether the cache served."""
    if cache is None or not hasattr(cache, "cache_path"):
        return compile_cached(), True
    try:
        with _cache_file_lock(cache):
            try:
                return compile_cached(), True
            except (CacheLockTimeout, OSError):
                raise
            except Exception:  # an entry that does not load: a truncated, flipped or swapped file
                _forget(cache)
                return compile_cached(), True
    except (CacheLockTimeout, OSError) as fault:
        _in_memory(fault, cache)
        return compile_in_memory(), False


def _compile_cfunc(pyfunc, sig):
    """*pyfunc* compiled as a C function; returns its address, whether it
    came from the cache, and the cache."""
    _require_the_compiler()
    from numba.core.ccallback import CFunc

    options = {k: v for k, v in _JIT_OPTIONS.items() if k != "nogil"}  # C functions hold no GIL anyway

    def make(caching):
        cfunc = CFunc(pyfunc, (sig.args, sig.return_type), locals={}, options=options)
        if caching:
            try:
                cfunc.enable_caching()
            except RuntimeError:
                pass  # no writable cache location ("no locator available"): compile in memory
            _stamp_with_dependencies(cfunc._cache)
        return cfunc

    cfunc = make(_caching())

    def compile_cached():
        cfunc.compile()
        if f"{len(pyfunc.__name__)}{pyfunc.__name__}" not in cfunc._wrapper_name:
            # The cache served another function's code (a swapped file).
            raise RuntimeError(f"the cache of {pyfunc.__name__} holds the code of {cfunc._wrapper_name}")
        return cfunc

    def compile_in_memory():
        fresh = make(False)
        fresh.compile()
        return fresh

    cfunc, cached = _cached_compile(cfunc._cache, compile_cached, compile_in_memory)
    _keep.append(cfunc)
    return cfunc.address, cached and cfunc.cache_hits > 0, cfunc._cache if cached else None


_dispatchers: dict[Any, Any] = {}  # (Python function, cached) -> its Numba dispatcher


def _dispatcher(pyfunc, caching):
    import numba

    disp = _dispatchers.get((pyfunc, caching))
    if disp is None:
        options = dict(_JIT_OPTIONS, _nrt=False)
        try:
            disp = numba.njit(cache=caching, **options)(pyfunc)
        except RuntimeError:
            disp = numba.njit(**options)(pyfunc)  # no writable cache location
        _stamp_with_dependencies(getattr(disp, "_cache", None))
        _dispatchers[pyfunc, caching] = disp
    return disp


def _compile_jit(pyfunc, sig):
    """*pyfunc* compiled for *sig*, without Numba's reference-counted runtime
    (the code allocates nothing); returns its entry point (callable from
    Python), whether it came from the cache, and the cache."""
    _require_the_compiler()
    disp = _dispatcher(pyfunc, _caching())
    cache = getattr(disp, "_cache", None)
    hits = sum(disp.stats.cache_hits.values())

    def compile_cached():
        compiled = disp.compile(sig)
        if tuple(sig) not in disp.overloads:
            # The cache served another signature's code (a swapped file).
            disp.overloads.clear()
            raise RuntimeError(f"the cache of {pyfunc.__name__} holds code of another signature")
        return compiled

    def compile_in_memory():
        return _dispatcher(pyfunc, False).compile(sig)

    compiled, cached = _cached_compile(cache, compile_cached, compile_in_memory)
    loaded = cached and sum(disp.stats.cache_hits.values()) > hits
    return compiled, loaded, cache if cached else None


def cache_location():
    """The folder of fastrelu's compiled code in Numba's cache, or None if
    it is compiled in memory in each process; compiles nothing."""
    if not _caching():
        return None
    from numba.core.caching import FunctionCache

    from ._loops import entry1

    try:
        return FunctionCache(entry1).cache_path
    except RuntimeError:  # no writable cache location
        return None


def _get(key, make):
    """The compiled code of *key*, made by ``make()`` on first use.

    Compiling takes locks (this module's, the cache folder's, Numba's and
    llvmlite's) that an interrupt must not leave taken, so it runs
    uninterrupted (:func:`fastrelu._threads.uninterrupted`)."""
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = _threads.uninterrupted(_make, key, make)
        _say_in_memory()
    return compiled


def _make(key, make):
    with _lock:
        compiled = _compiled.get(key)
        if compiled is None:
            compiled, loaded, cache = make()
            path = getattr(cache, "cache_path", None)
            log.append({"key": repr(key), "loaded": loaded, "cache_path": path})
            _compiled[key] = compiled
    return compiled


def _fold(kernel, scalars):
    """A value per scalar: the folded constant where *scalars* match the
    kernel's folded values, else None."""
    if kernel.folded and all(
        scalars[kernel.scalars.index(name)] == value for name, value in kernel.folded.items()
    ):
        return tuple(kernel.folded.get(name) for name in kernel.scalars)
    return (None,) * len(kernel.scalars)


def function(kernel, dtype, scalars):
    """The address of *kernel*'s chunk function for *dtype* (a NumPy dtype),
    the folded variant if *scalars* match it."""
    fold = _fold(kernel, scalars)
    key = ("chunk", kernel.name, dtype, fold)

    def make():
        import numba

        from ._loops import chunk_function

        return _compile_cfunc(
            chunk_function(kernel, numba.from_dtype(dtype), fold),
            numba.types.void(numba.types.int64, numba.types.int64, numba.types.int64),
        )

    return _get(key, make)


def _pool_runner():
    """Compile (or load) the pool's ``run_job`` and name it as the symbol the
    entries call; done before any entry is compiled or loaded."""

    def make():
        import llvmlite.binding
        import numba

        from . import _pool

        address, loaded, cache = _compile_cfunc(_pool.run_job, numba.types.void(*(numba.types.int64,) * 5))
        llvmlite.binding.add_symbol("fastrelu_pool_run", address)
        return address, loaded, cache

    return _get(("pool",), make)


def entry(n_operands, dtype, ndim, n_scalars):
    """The compiled entry for *n_operands* operands and an output, all of
    *dtype* and *ndim* dimensions, and *n_scalars* scalars."""

    def make():
        from numba import from_dtype, types

        from ._loops import ENTRIES

        array = types.Array(from_dtype(dtype), ndim, "A")
        sig = (
            (types.int64, types.int64)
            + (array,) * (n_operands + 1)
            + (types.UniTuple(types.float64, n_scalars),)
        )
        return _compile_jit(ENTRIES[n_operands], sig)

    _pool_runner()  # the symbol the entry calls, before the entry is compiled or loaded
    return _get(("entry", n_operands, dtype, ndim, n_scalars), make)


def compiled_serve():
    """The workers' wait loop of :mod:`fastrelu._pool`, compiled."""

    def make():
        from numba import types

        from . import _pool

        return _compile_jit(_pool.serve, (types.int64,) * 3)

    return _get(("serve",), make)


def compiled_retire():
    """The pool's :func:`fastrelu._pool.retire`, which ends a worker, compiled."""

    def make():
        from numba import types

        from . import _pool

        return _compile_jit(_pool.retire, (types.int64,) * 2)

    return _get(("retire",), make)


def fast(kernel, dtype, ndim, scalars):
    """``(entry, function, scalars)``: what the public functions' fast path
    passes for *kernel* on arrays of *dtype* and *ndim* dimensions."""
    scalars = tuple(scalars)
    return entry(len(kernel.operands), dtype, ndim, len(scalars)), function(kernel, dtype, scalars), scalars


_pool = None  # fastrelu._pool, once imported (it imports Numba)


def run_planned(compiled_entry, address, arrays, scalars, request):
    """Run *compiled_entry* on *arrays* after it answered ``NEEDS_PLAN`` to
    *request*: with the calling thread's cap, and the workers the thread
    settings want.  Returns the entry's last answer (``DONE`` or
    ``UNSUPPORTED``)."""
    global _pool
    if _pool is None:
        from . import _pool
    request = request & ((1 << _threads.CAP_SHIFT) - 1) | _threads.cap() << _threads.CAP_SHIFT
    while (status := compiled_entry(address, request, *arrays, scalars)) == NEEDS_PLAN:
        _pool.get().ready(config.get_num_threads())
    return status


def launch(kernel, arrays, scalars):
    """Run *kernel* over 1-D contiguous *arrays* (operands, then the output)
    of one dtype, with *scalars*; the caller has made sure that no input
    overlaps the output other than exactly."""
    compiled_entry, address, scalars = fast(kernel, arrays[0].dtype, 1, scalars)
    request = _threads.request(config.PARALLEL_MIN_SIZE[kernel.name])
    if run_planned(compiled_entry, address, arrays, scalars, request) != DONE:
        raise RuntimeError(f"{kernel.name}: the compiled entry declined arrays the general path prepared")
