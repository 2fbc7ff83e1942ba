"""fastrelu's settings: the few tunables of its CPU path.

Read them as attributes of this module; change them with :func:`set`, for
good, or for a block as a context manager (the settings are the process's,
not a thread's)::

    import fastrelu.config

    fastrelu.config.set(num_threads=4)
    with fastrelu.config.set(parallel_min_size={"relu": 0}, parallel_min_chunk=256):
        ...  # the previous values are back after the block

The attributes are read-only: assigning one is an ``AttributeError`` that
names the call to make instead.  A change takes effect at the next call.

``PARALLEL_MIN_SIZE`` (``parallel_min_size``) gives, per kernel, the number
of elements from which a call is split across threads, and
``PARALLEL_MIN_CHUNK`` (``parallel_min_chunk``) the least work given to one
thread; both were chosen by measurement (``docs/performance.md``): splitting
pays once a kernel's serial time is a few microseconds, sooner for the
compute-bound softplus than for the memory-bound ReLU pair.  The number of
threads (``num_threads``, :func:`get_num_threads`) defaults to the CPUs this
process may run on, or to the environment variable ``FASTRELU_NUM_THREADS``;
lowering it ends the surplus workers of the thread pool.
``STREAM_MIN_BYTES`` (``stream_min_bytes``) is the size of an output, in
bytes, from which the ReLU pair writes it with non-temporal stores that
bypass the caches (by default the size of the last-level cache).
``DASK_BLOCK_THREADS`` (``dask_block_threads``) caps the threads of each
task of a Dask graph (None: no cap); it is read when the graph is built.
``CACHE_LOCK_SECONDS`` (``cache_lock_seconds``) bounds how long a first call
waits for another process that holds the lock of the compiled-code cache
before it compiles in memory.  ``BUFFER_SIZE`` (``buffer_size``) is the
length, in elements, of the buffers through which a call converts its
operands (float16 computes in float32, integers in floating point),
broadcasts them or reads strided views: such a call needs a few buffers of
extra memory, never a copy of its arrays.  ``MAX_THREADS`` is the most
threads fastrelu can be set to.
"""

import glob
import math
import numbers
import operator
import os
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ._table import KERNELS

# Called after any change of the settings: the public functions keep each
# kernel's size next to its compiled code, compiled code reads the others
# from a copy (fastrelu._threads.settings), and the thread pool ends the
# workers beyond the thread count.
_listeners: list[Callable[[], None]] = []


def _changed():
    for listener in _listeners:
        listener()


def _short_repr(value):
    from ._elementwise import short_repr

    return short_repr(value)


class _Sizes(Mapping):
    """Kernel name -> elements from which its calls are split across threads
    (read-only: ``fastrelu.config.set(parallel_min_size={...})`` changes it)."""

    def __init__(self, sizes):
        self._sizes = dict(sizes)

    def __getitem__(self, name):
        return self._sizes[name]

    def __setitem__(self, name, value):
        raise TypeError(
            f"fastrelu.config.PARALLEL_MIN_SIZE is read-only: "
            f"use fastrelu.config.set(parallel_min_size={{{name!r}: {_short_repr(value)}}})"
        )

    def __delitem__(self, name):
        raise TypeError(
            "fastrelu.config.PARALLEL_MIN_SIZE is read-only, and every kernel needs a size: "
            f"use fastrelu.config.set(parallel_min_size={{{name!r}: ...}})"
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._sizes)

    def __len__(self):
        return len(self._sizes)

    def __repr__(self):
        return repr(self._sizes)


PARALLEL_MIN_SIZE = _Sizes({name: kernel.parallel_min_size for name, kernel in KERNELS.items()})
PARALLEL_MIN_CHUNK = 1 << 10


def _last_level_cache():
    """The largest CPU cache in bytes, from Linux's sysfs; 32 MiB elsewhere."""
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path) as f:
                text = f.read().strip()  # "32768K"
            sizes.append(int(text.rstrip("KM")) * {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1))
        except (OSError, ValueError, IndexError):
            pass
    return max(sizes, default=32 << 20)


# Outputs of at least this many bytes are written with non-temporal stores,
# past the caches, by the kernels that move much memory for little
# arithmetic (the ReLU pair): larger than the last-level cache, they would
# not stay there anyway, and such stores spare the read of each line of the
# output before it is written, a third of a ReLU's memory traffic.
STREAM_MIN_BYTES = _last_level_cache()

# Elements per buffer of a call that converts, broadcasts or gathers its
# operands (one buffer per operand that needs it): large enough that the
# kernel splits each piece across threads (docs/performance.md), a few MiB.
BUFFER_SIZE = 1 << 20

# Seconds a first call waits for another process that holds the cache
# folder's lock (compiling, or stopped in a debugger) before it compiles in
# memory instead.
CACHE_LOCK_SECONDS = 30.0

# Threads each Dask task may use for its chunk (None: as many as any call).
# Dask already runs one task per core; the measurement is in docs/dask.md.
DASK_BLOCK_THREADS: int | None = 1


# The most threads fastrelu can be set to: the most a call's plan argument
# can cap a call at (23 bits, fastrelu._threads.request).
MAX_THREADS = (1 << 23) - 1


def _thread_count(n):
    """*n* as a number of threads, or None where it is not one."""
    if isinstance(n, bool):
        return None
    try:
        value = operator.index(n)
    except TypeError:
        return None
    return value if 1 <= value <= MAX_THREADS else None


def _outside_the_package():
    """The ``stacklevel`` of a warning that points at the first frame outside
    fastrelu and the import machinery: the user's code that caused it."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = frame.f_code.co_filename
        if "importlib" in name and "_bootstrap" in name:
            frame = frame.f_back  # warnings skips these frames itself
            continue
        if not name.startswith((here, "<fastrelu")):  # "<fastrelu.relu>": a generated function
            return level
        frame, level = frame.f_back, level + 1
    return 1


def _default_threads():
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    env = os.environ.get("FASTRELU_NUM_THREADS")
    if env:
        try:
            value = _thread_count(int(env))
        except ValueError:
            value = None
        if value is not None:
            return value
        warnings.warn(
            f"ignoring FASTRELU_NUM_THREADS={env!r}: not a positive integer of at most {MAX_THREADS}; "
            f"using {cpus} threads",
            RuntimeWarning,
            stacklevel=_outside_the_package(),
        )
    return cpus


_num_threads = _default_threads()


# -- Checking the values of set() ------------------------------------------


def _check_num_threads(value):
    count = _thread_count(value)
    if count is None:
        raise ValueError(
            f"num_threads must be a positive integer of at most {MAX_THREADS}, got {_short_repr(value)}"
        )
    return count


def _positive(name):
    def check(value):
        try:
            number = -1 if isinstance(value, bool) else operator.index(value)
        except TypeError:
            number = -1
        if number < 1:
            raise ValueError(f"{name} must be a positive integer, got {_short_repr(value)}")
        return number

    return check


def _check_sizes(value):
    """The checked entries of *value*, as a dict: :func:`_apply` merges them
    into the sizes in force."""
    if not isinstance(value, Mapping):
        raise ValueError(
            "parallel_min_size must be a mapping of kernel names to sizes, "
            f"such as {{'relu': 4096}}, got {_short_repr(value)}"
        )
    sizes = {}
    for name, size in value.items():
        if not isinstance(name, str) or name not in KERNELS:
            raise ValueError(
                f"parallel_min_size: no kernel named {name!r}; the kernels are {sorted(KERNELS)}"
            )
        try:
            number = -1 if isinstance(size, bool) else operator.index(size)
        except TypeError:
            number = -1
        if number < 0:
            raise ValueError(
                f"parallel_min_size[{name!r}] must be a non-negative integer, got {_short_repr(size)}"
            )
        sizes[name] = number
    return sizes


def _check_seconds(value):
    seconds = math.nan
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        try:
            seconds = float(value)
        except OverflowError:
            pass
    if not (0 <= seconds < math.inf):
        raise ValueError(f"cache_lock_seconds must be a non-negative finite number, got {_short_repr(value)}")
    return seconds


def _check_block_threads(value):
    if value is None:
        return None
    count = _thread_count(value)
    if count is None:
        raise ValueError(
            f"dask_block_threads must be None or a positive integer of at most {MAX_THREADS}, "
            f"got {_short_repr(value)}"
        )
    return count


# set()'s keyword -> (the module attribute it changes, its check)
_SETTINGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "num_threads": ("_num_threads", _check_num_threads),
    "parallel_min_size": ("PARALLEL_MIN_SIZE", _check_sizes),
    "parallel_min_chunk": ("PARALLEL_MIN_CHUNK", _positive("parallel_min_chunk")),
    "stream_min_bytes": ("STREAM_MIN_BYTES", _positive("stream_min_bytes")),
    "buffer_size": ("BUFFER_SIZE", _positive("buffer_size")),
    "cache_lock_seconds": ("CACHE_LOCK_SECONDS", _check_seconds),
    "dask_block_threads": ("DASK_BLOCK_THREADS", _check_block_threads),
}
_KEYWORDS = {attribute: keyword for keyword, (attribute, _) in _SETTINGS.items()}

_lock = threading.RLock()  # held while settings change and the listeners follow


def _renew_lock():
    global _lock
    _lock = threading.RLock()  # a forked child's: the parent's may be held by a thread it lacks


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_lock)


def _apply(values):
    """Store *values* (attribute -> checked value; a dict of sizes is merged
    into the sizes in force) and tell the listeners; return the values they
    replace."""
    namespace = globals()
    with _lock:
        previous = {attribute: namespace[attribute] for attribute in values}
        sizes = values.get("PARALLEL_MIN_SIZE")
        if isinstance(sizes, dict):
            values = dict(values, PARALLEL_MIN_SIZE=_Sizes({**PARALLEL_MIN_SIZE, **sizes}))
        namespace.update(values)
        _changed()
    return previous


def _uninterrupted(function, *args):
    # A KeyboardInterrupt between a change and its listeners would leave
    # the copies of the settings out of step (fastrelu._threads.uninterrupted).
    from ._threads import uninterrupted

    return uninterrupted(function, *args)


class _Settings:
    """What :func:`set` returns: the change is made; as a context manager,
    it is undone on leaving the block."""

    def __init__(self, previous):
        self._previous = previous

    def __enter__(self) -> "_Settings":
        return self

    def __exit__(self, *exc_info: object) -> None:
        _uninterrupted(_apply, self._previous)

    def __repr__(self):
        names = ", ".join(_KEYWORDS[attribute] for attribute in self._previous)
        return f"<fastrelu.config.set of {names}>"


class _Unchanged:
    def __repr__(self):
        return "unchanged"


_UNCHANGED: Any = _Unchanged()  # the default of set()'s keywords: the setting is left as it is


def set(
    *,
    num_threads: int = _UNCHANGED,
    parallel_min_size: Mapping[str, int] = _UNCHANGED,
    parallel_min_chunk: int = _UNCHANGED,
    stream_min_bytes: int = _UNCHANGED,
    buffer_size: int = _UNCHANGED,
    cache_lock_seconds: float = _UNCHANGED,
    dask_block_threads: int | None = _UNCHANGED,
    **unknown: Any,
) -> _Settings:
    """Change fastrelu's settings, for good or for a ``with`` block.

    Only the settings given change, and every value is checked before any
    is changed: a bad one changes nothing.  The change takes effect at the next call, in every thread.
    Used as a context manager, the settings it changed get their previous
    values back when the block ends, an exception included (as
    ``dask.config.set`` and ``numpy.errstate`` do).

    Parameters
    ----------
    num_threads : int, optional
        The number of threads for large arrays, from 1 (every call serial)
        to ``MAX_THREADS``; as ``fastrelu.set_num_threads``.  Fewer
        threads than before end the thread pool's surplus workers.
    parallel_min_size : mapping of str to int, optional
        Per kernel (``"relu"``, ``"relu_backward"``, ``"softplus"``,
        ``"softplus_backward"``), the number of elements, 0 or more, from
        which a call is split across threads.  Kernels not named keep
        theirs.  Read as ``PARALLEL_MIN_SIZE``.
    parallel_min_chunk : int, optional
        The least number of elements given to one thread, 1 or more.  Read
        as ``PARALLEL_MIN_CHUNK``.
    stream_min_bytes : int, optional
        The size of an output in bytes, 1 or more, from which the ReLU pair
        writes it past the caches.  Read as ``STREAM_MIN_BYTES``.
    buffer_size : int, optional
        The length in elements, 1 or more, of the buffers through which a
        call converts, broadcasts or gathers its operands.  Read as
        ``BUFFER_SIZE``.
    cache_lock_seconds : float, optional
        How long, 0 or more, a first call waits for another process that
        holds the lock of the compiled-code cache.  Read as
        ``CACHE_LOCK_SECONDS``.
    dask_block_threads : int or None, optional
        The threads each task of a Dask graph may use (None: as many as any
        call), read when the graph is built.  Read as
        ``DASK_BLOCK_THREADS``.

    Returns
    -------
    context manager
        Leaving its block restores the previous values of the settings
        given here, and of those only.

    Raises
    ------
    TypeError
        For a keyword that is not a setting.
    ValueError
        For a value a setting cannot take; nothing is changed then.

    Examples
    --------
    >>> import fastrelu.config
    >>> with fastrelu.config.set(parallel_min_size={"relu": 0}, num_threads=2):
    ...     fastrelu.config.PARALLEL_MIN_SIZE["relu"], fastrelu.get_num_threads()
    (0, 2)
    """
    if unknown:
        raise TypeError(
            f"fastrelu.config.set() got an unknown setting {next(iter(unknown))!r}; the settings are "
            + ", ".join(_SETTINGS)
        )
    given = {
        "num_threads": num_threads,
        "parallel_min_size": parallel_min_size,
        "parallel_min_chunk": parallel_min_chunk,
        "stream_min_bytes": stream_min_bytes,
        "buffer_size": buffer_size,
        "cache_lock_seconds": cache_lock_seconds,
        "dask_block_threads": dask_block_threads,
    }
    values = {}
    for name, value in given.items():
        if value is not _UNCHANGED:
            attribute, check = _SETTINGS[name]
            values[attribute] = check(value)
    return _Settings(_uninterrupted(_apply, values))


def get_num_threads() -> int:
    """Return the number of threads fastrelu uses for large arrays."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the number of threads fastrelu uses for large arrays.

    The same as ``fastrelu.config.set(num_threads=n)``.

    Parameters
    ----------
    n : int
        A positive number of threads, at most :data:`MAX_THREADS`; 1 makes
        every call serial.  Fewer threads than before end the thread pool's
        surplus workers.

    Raises
    ------
    ValueError
        For anything else; the setting is then unchanged.
    """
    set(num_threads=n)


class _ConfigModule(types.ModuleType):
    # The settings are read-only attributes: set() changes them.
    def __setattr__(self, name, value):
        _refuse(name)
        super().__setattr__(name, value)

    def __delattr__(self, name):
        _refuse(name)
        super().__delattr__(name)


def _refuse(name):
    if name == "MAX_THREADS":
        raise AttributeError("fastrelu.config.MAX_THREADS is a constant")
    keyword = _KEYWORDS.get(name)
    if keyword is not None:
        example = "{'relu': 4096}" if keyword == "parallel_min_size" else "..."
        raise AttributeError(
            f"fastrelu.config.{name} is read-only: use fastrelu.config.set({keyword}={example})"
        )


sys.modules[__name__].__class__ = _ConfigModule
