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

from . import _formulas, _pool
from ._kernels import DONE, NEEDS_PLAN, UNSUPPORTED
from ._native import call_chunk, load, load_float, pointer, stack_words, store, store_floats

# The most scalar parameters a formula may have.
MAX_SCALARS = 4


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

    if len(kernel.operands) == 1:

        def chunk(args, lo, hi):
            n = hi - lo
            x, out = _array(args, 0, lo, n, T, size), _array(args, 1, lo, n, T, size)
            s = _scalars(args, first, T, f0, f1, f2, f3)[:n_scalars]
            for i in range(n):
                out[i] = formula(x[i], *s)

    elif len(kernel.operands) == 2:

        def chunk(args, lo, hi):
            n = hi - lo
            x, y = _array(args, 0, lo, n, T, size), _array(args, 1, lo, n, T, size)
            out = _array(args, 2, lo, n, T, size)
            s = _scalars(args, first, T, f0, f1, f2, f3)[:n_scalars]
            for i in range(n):
                out[i] = formula(x[i], y[i], *s)

    else:
        raise ValueError(f"{kernel.name}: a kernel has 1 or 2 operands, not {len(kernel.operands)}")
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
    words = 0
    for a in arrays:
        address = a.ctypes.data
        if address != start and address < start + nbytes and start < address + nbytes:
            return UNSUPPORTED  # an input partly overlaps the output
        store(args + 8 * words, address)
        words += 1
    store_floats(args + 8 * words, scalars)
    words += len(scalars)
    if n == 0:
        return DONE
    threads, step = _pool.plan(_pool.settings_address(), n, plan)
    if threads == 0:
        return NEEDS_PLAN
    if threads == 1:
        call_chunk(function, args, 0, n)
    else:
        _pool.run(_pool.block_address(), function, args, words, n, step, threads)
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
