"""The few tunables of fastrelu's CPU path.

``PARALLEL_MIN_SIZE`` gives, per kernel, the number of elements from which a
call is split across threads, and ``PARALLEL_MIN_CHUNK`` the least work given
to one thread; both were chosen by measurement (``docs/performance.md``):
splitting pays once a kernel's serial time is a few microseconds, sooner for
the compute-bound softplus than for the memory-bound ReLU pair.
``STREAM_MIN_BYTES`` is the size of an output, in bytes, from which the ReLU
pair writes it with non-temporal stores that bypass the caches (by default
the size of the last-level cache).  Changes to them, whole or entry by
entry, take effect at the next call.  The number of
threads defaults to the CPUs this process may run on, or to the environment
variable ``FASTRELU_NUM_THREADS``.  ``DASK_BLOCK_THREADS`` caps the threads
of each task of a Dask graph; it is read when the graph is built.
``CACHE_LOCK_SECONDS`` bounds how long a first call waits for another
process that holds the lock of the compiled-code cache before it compiles
in memory.  ``BUFFER_SIZE`` is the length, in elements, of the buffers
through which a call converts its operands (float16 computes in float32,
integers in floating point), broadcasts them or reads strided views: such
a call needs a few buffers of extra memory, never a copy of its arrays.
"""

import glob
import operator
import os
import sys
import types
import warnings
from collections.abc import Callable, MutableMapping

from ._table import KERNELS

# Called after any change of the thread settings: the public functions keep
# each kernel's size next to its compiled code, and compiled code reads the
# others from a copy (fastrelu._threads.settings).
_listeners: list[Callable[[], None]] = []
_OBSERVED = ("PARALLEL_MIN_SIZE", "PARALLEL_MIN_CHUNK", "STREAM_MIN_BYTES", "_num_threads")


def _changed():
    for listener in _listeners:
        listener()


def _size(name, value):
    try:
        size = operator.index(value)
    except TypeError:
        size = -1
    if isinstance(value, bool) or size < 0:
        raise ValueError(f"PARALLEL_MIN_SIZE[{name!r}] must be a non-negative integer, got {value!r}")
    return size


class _Sizes(MutableMapping):
    """Kernel name -> elements from which its calls are split across threads."""

    def __init__(self, sizes):
        if set(sizes) != set(KERNELS):
            raise KeyError(
                f"PARALLEL_MIN_SIZE needs exactly the kernels {sorted(KERNELS)}, got {sorted(sizes)}"
            )
        self._sizes = {name: _size(name, sizes[name]) for name in KERNELS}

    def __getitem__(self, name):
        return self._sizes[name]

    def __setitem__(self, name, value):
        if name not in KERNELS:
            raise KeyError(f"no kernel named {name!r}; the kernels are {sorted(KERNELS)}")
        self._sizes[name] = _size(name, value)
        _changed()

    def __delitem__(self, name):
        raise TypeError("every kernel needs a PARALLEL_MIN_SIZE; assign a value instead")

    def __iter__(self):
        return iter(self._sizes)

    def __len__(self):
        return len(self._sizes)

    def __repr__(self):
        return repr(self._sizes)


class _ConfigModule(types.ModuleType):
    # Assigning a setting takes effect at the next call; a new mapping for
    # PARALLEL_MIN_SIZE is checked and observed like the first.
    def __setattr__(self, name, value):
        if name == "PARALLEL_MIN_SIZE" and not isinstance(value, _Sizes):
            value = _Sizes(value)
        if name in ("PARALLEL_MIN_CHUNK", "STREAM_MIN_BYTES", "BUFFER_SIZE"):
            value = operator.index(value)
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        super().__setattr__(name, value)
        if name in _OBSERVED:
            _changed()


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
DASK_BLOCK_THREADS = 1


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


def get_num_threads() -> int:
    """Return the number of threads fastrelu uses for large arrays."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the number of threads fastrelu uses for large arrays.

    Parameters
    ----------
    n : int
        A positive number of threads, at most :data:`MAX_THREADS`; 1 makes
        every call serial.

    Raises
    ------
    ValueError
        For anything else; the setting is then unchanged.
    """
    global _num_threads
    value = _thread_count(n)
    if value is None:
        from ._elementwise import short_repr

        raise ValueError(
            f"the number of threads must be a positive integer of at most {MAX_THREADS}, got {short_repr(n)}"
        )
    _num_threads = value
    _changed()


sys.modules[__name__].__class__ = _ConfigModule
