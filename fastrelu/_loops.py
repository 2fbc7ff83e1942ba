"""The CPU code of every kernel: a chunk function per kernel and dtype, and
the entry that Python calls.

A *chunk function* is a C function ``void chunk(args, lo, hi)`` made from a
kernel's entry in :mod:`fastrelu._table`: it applies the kernel's formula to
elements ``lo`` to ``hi`` of the 1-D contiguous arrays whose addresses the
*argument block* ``args`` holds (each operand's, then the output's), with the
scalars stored after them as float64.  A C function can be called through
its address from any thread, which is how the thread pool
(:mod:`fastrelu._pool`) runs the chunks of a large array.

The *entry* takes the arrays themselves from Python: it checks that they can
be read as flat memory (one shape, contiguous in one order, no partial
overlap with the output), fills an argument block on its stack and runs the
chunk function, serially or on the pool.  Its checks cost nanoseconds, which
is what keeps a call on a small array cheap.

:mod:`fastrelu._kernels` compiles both; importing this module imports Numba.
"""

import math

from numba import carray
from numba.extending import register_jitable

from . import _formulas, _pool, _threads
from ._kernels import DONE, NEEDS_PLAN, UNSUPPORTED
from ._native import (
    STAGING_BYTES,
    call_chunk,
    load,
    load_float,
    pointer,
    stack_staging,
    stack_words,
    store,
    store_floats,
    stream_fence,
    stream_line,
)

# The most scalar parameters a formula may have.
MAX_SCALARS = 4
# The word of the argument block that asks a streaming chunk function to
# write past the caches (after at most 3 arrays and MAX_SCALARS scalars).
STREAM_WORD = 7


@register_jitable(forceinline=True)
def _array(args, index, lo, n, T, itemsize):
    """Elements lo to lo + n of the array of *T* (of *itemsize* bytes) whose
    address is word *index* of *args*."""
    return carray(pointer(load(args + 8 * index) + lo * itemsize, T), n)


@register_jitable(forceinline=True)
def _scalar(args, index, T, constant):
    """*constant* (NaN: the float64 in word *index* of *args*) in type *T*."""
    if constant == constant:
        return T(constant)
    return T(load_float(args + 8 * index))


@register_jitable(forceinline=True)
def _scalars(args, first, T, f0, f1, f2, f3):
    return (
        _scalar(args, first, T, f0),
        _scalar(args, first + 1, T, f1),
        _scalar(args, first + 2, T, f2),
        _scalar(args, first + 3, T, f3),
    )


def chunk_function(kernel, T, fold):
    """The chunk function of *kernel* for the Numba type *T*, as a Python
    function for ``numba.cfunc``.

    *fold* holds a value per scalar: that constant, or None for "read it
    from the argument block".  The constants are the closure's, so the
    compiler folds them into the formula.
    """
    formula = getattr(_formulas, kernel.formula)
    n_scalars = len(kernel.scalars)
    first = len(kernel.operands) + 1  # words before the scalars
    size = T.bitwidth // 8
    fold = [math.nan if value is None else value for value in fold]  # NaN: not folded
    f0, f1, f2, f3 = fold + [math.nan] * (MAX_SCALARS - len(fold))

    n_operands = len(kernel.operands)
    if n_operands == 1:

        def fill(args, lo, n, out, s):
            x = _array(args, 0, lo, n, T, size)
            for i in range(n):
                out[i] = formula(x[i], *s)

    elif n_operands == 2:

        def fill(args, lo, n, out, s):
            x, y = _array(args, 0, lo, n, T, size), _array(args, 1, lo, n, T, size)
            for i in range(n):
                out[i] = formula(x[i], y[i], *s)

    else:
        raise ValueError(f"{kernel.name}: a kernel has 1 or 2 operands, not {n_operands}")
    # Numba tells compiled functions apart by qualified name and a number
    # unique to one process only: code loaded from the cache, compiled by
    # different processes, needs names of its own.
    tag = f"{kernel.name}_{T}_{'folded' if any(v == v for v in fold) else 'general'}"
    fill.__name__ = fill.__qualname__ = f"fill_{tag}"
    fill = register_jitable(forceinline=True)(fill)  # "fill out with elements lo to lo + n"
    per = STAGING_BYTES // size

    def chunk(args, lo, hi):
        n = hi - lo
        s = _scalars(args, first, T, f0, f1, f2, f3)[:n_scalars]
        out = load(args + 8 * n_operands) + lo * size  # the address of element lo of the output
        fill(args, lo, n, carray(pointer(out, T), n), s)

    def streaming_chunk(args, lo, hi):
        n = hi - lo
        s = _scalars(args, first, T, f0, f1, f2, f3)[:n_scalars]
        out = load(args + 8 * n_operands) + lo * size
        if load(args + 8 * STREAM_WORD) == 0:
            fill(args, lo, n, carray(pointer(out, T), n), s)
            return
        # Computed into a buffer on the stack, then written a 64-byte line at
        # a time past the caches; the ends up to a line boundary as usual.
        head = min(n, (-out % 64) // size)
        fill(args, lo, head, carray(pointer(out, T), head), s)
        staging = stack_staging()
        buffer = carray(pointer(staging, T), per)
        done = head
        while done + per <= n:
            fill(args, lo + done, per, buffer, s)
            for k in range(0, STAGING_BYTES, 64):
                stream_line(out + done * size + k, staging + k)
            done += per
        fill(args, lo + done, n - done, carray(pointer(out + done * size, T), n - done), s)
        stream_fence()

    chunk = streaming_chunk if kernel.streams else chunk
    chunk.__name__ = chunk.__qualname__ = f"chunk_{tag}"
    return chunk


@register_jitable
def _contiguous(arrays, fortran):
    """Whether all *arrays* are contiguous in C order (or, with *fortran*,
    in Fortran order), by NumPy's rule: axes of length 1 have any stride."""
    for a in arrays:
        step = a.itemsize
        for i in range(a.ndim):
            k = i if fortran else a.ndim - 1 - i
            if a.shape[k] != 1 and a.strides[k] != step:
                return False
            step *= a.shape[k]
    return True


@register_jitable
def _run(function, plan, arrays, scalars):
    out = arrays[len(arrays) - 1]
    n = out.size
    for a in arrays:
        if a.shape != out.shape:
            return UNSUPPORTED
    if not (_contiguous(arrays, False) or _contiguous(arrays, True)):
        return UNSUPPORTED
    start, nbytes = out.ctypes.data, n * out.itemsize
    args = stack_words()
    word = 0
    for a in arrays:
        address = a.ctypes.data
        if address != start and address < start + nbytes and start < address + nbytes:
            return UNSUPPORTED  # an input partly overlaps the output
        store(args + 8 * word, address)
        word += 1
    store_floats(args + 8 * word, scalars)
    return run_chunks(function, plan, args, n, nbytes)


@register_jitable
def run_chunks(function, plan, args, n, nbytes):
    """Run the chunk function at address *function* over ``range(n)`` with
    the argument block *args*, serially or on the pool as *plan* asks;
    *nbytes*, the bytes of the output, decides on non-temporal stores.
    ``NEEDS_PLAN`` where Python must act first."""
    settings = _pool.settings_address()
    store(args + 8 * STREAM_WORD, 1 if nbytes >= load(settings + 8 * _threads.STREAM_FROM) else 0)
    if n == 0:
        return DONE
    threads, step = _pool.plan(settings, n, plan)
    if threads == 0:
        return NEEDS_PLAN
    if threads == 1:
        call_chunk(function, args, 0, n)
    else:
        _pool.run_compiled(function, args, n, step, threads)
    return DONE


# The entries, one per number of operands.  An entry runs the chunk function
# at address *function* over its arrays (the operands, then the output) with
# *scalars* (a tuple of float64).
#
# *plan* asks how to split the call (``_threads.request``: from how many
# elements, on at most how many threads), and ``_pool.plan`` answers from
# the thread settings; it returns ``NEEDS_PLAN``, having computed nothing,
# where Python must act first (make workers, or read the caller's cap in a
# Dask task).  Calls below the size run serially.  An entry returns
# ``UNSUPPORTED``, having touched nothing, unless all arrays have one shape,
# are contiguous in one memory order, and the output overlaps no input other
# than exactly.  They are compiled without Numba's reference-counted runtime,
# whose bookkeeping for each array would cost more than the rest of a small
# call.


def entry1(function, plan, x, out, scalars):
    return _run(function, plan, (x, out), scalars)


def entry2(function, plan, x, y, out, scalars):
    return _run(function, plan, (x, y, out), scalars)


ENTRIES = {1: entry1, 2: entry2}
