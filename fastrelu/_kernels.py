"""Compiles the CPU code lazily, caches it on disk, and runs it.

Nothing is compiled at import time, and Numba itself is imported only on the
first call.  Three kinds of compiled code exist (:mod:`fastrelu._loops`,
:mod:`fastrelu._pool`), each compiled on first use and stored in Numba's
on-disk cache, or loaded from there:

- a chunk function per kernel, dtype and folded variant (the kernel's loop,
  a C function that any thread can call through its address);
- an entry per number of arrays, dtype and number of dimensions (what
  Python calls);
- the workers' wait loop.

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

from . import _threads, config
from ._threads import ForkSafeLock

# The entry's answers (see fastrelu._loops.entry).
DONE, UNSUPPORTED, NEEDS_PLAN = 0, 1, 2

_JIT_OPTIONS = dict(nogil=True, error_model="numpy", boundscheck=False)

_compiled = {}  # key -> compiled code: a chunk function's address, an entry point, the wait loop
_keep = []  # the compiled objects behind those addresses
# What was compiled or loaded, in order: {"key": str, "loaded": from the
# cache or compiled, "cache_path": the cache folder or None}.
log = []
_lock = ForkSafeLock()


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
    from . import _formulas, _libm, _loops, _native, _pool

    digest = hashlib.sha256()
    for module in (_formulas, _libm, _loops, _native, _pool):
        with open(module.__file__, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _caching():
    return os.environ.get("FASTRELU_CACHE", "1") != "0"


@contextlib.contextmanager
def _cache_file_lock(cache):
    """Serialise compile-and-save across processes sharing one cache folder.

    Numba names a new cache data file after the entries of the index it read;
    two processes compiling different signatures of one function at once can
    leave an index entry pointing at the other signature's code.
    """
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


def _require_the_compiler():
    from numba.core import config as numba_config

    if numba_config.DISABLE_JIT:
        raise RuntimeError(
            "fastrelu runs compiled code only, and NUMBA_DISABLE_JIT=1 switches Numba's compiler off: "
            "unset NUMBA_DISABLE_JIT to use fastrelu"
        )


def _compile_cfunc(pyfunc, sig):
    """*pyfunc* compiled as a C function; returns its address, whether it
    came from the cache, and the cache."""
    _require_the_compiler()
    from numba.core.ccallback import CFunc

    options = {k: v for k, v in _JIT_OPTIONS.items() if k != "nogil"}  # C functions hold no GIL anyway
    cfunc = CFunc(pyfunc, (sig.args, sig.return_type), locals={}, options=options)
    if _caching():
        try:
            cfunc.enable_caching()
        except RuntimeError:
            pass  # no writable cache location ("no locator available"): compile in memory
    _stamp_with_dependencies(cfunc._cache)
    with _cache_file_lock(cfunc._cache):
        cfunc.compile()
    _keep.append(cfunc)
    return cfunc.address, cfunc.cache_hits > 0, cfunc._cache


_dispatchers = {}  # Python function -> its Numba dispatcher


def _compile_jit(pyfunc, sig):
    """*pyfunc* compiled for *sig*, without Numba's reference-counted runtime
    (the code allocates nothing); returns its entry point (callable from
    Python), whether it came from the cache, and the cache."""
    _require_the_compiler()
    import numba

    disp = _dispatchers.get(pyfunc)
    if disp is None:
        options = dict(_JIT_OPTIONS, _nrt=False)
        try:
            disp = numba.njit(cache=_caching(), **options)(pyfunc)
        except RuntimeError:
            disp = numba.njit(**options)(pyfunc)  # no writable cache location
        _stamp_with_dependencies(getattr(disp, "_cache", None))
        _dispatchers[pyfunc] = disp
    hits = sum(disp.stats.cache_hits.values())
    cache = getattr(disp, "_cache", None)
    with _cache_file_lock(cache):
        compiled = disp.compile(sig)
    return compiled, sum(disp.stats.cache_hits.values()) > hits, cache


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
    """The compiled code of *key*, made by ``make()`` on first use."""
    compiled = _compiled.get(key)
    if compiled is None:
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
    key = ("chunk", kernel.name, str(dtype), fold)

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
    return _get(("entry", n_operands, str(dtype), ndim, n_scalars), make)


def compiled_serve():
    """The workers' wait loop of :mod:`fastrelu._pool`, compiled."""

    def make():
        from numba import types

        from . import _pool

        return _compile_jit(_pool.serve, (types.int64,) * 3)

    return _get(("serve",), make)


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
