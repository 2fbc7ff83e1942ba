"""The CPU code of the ReLU masks: the forward that packs a mask as it goes,
and the backward that reads one (see :class:`fastrelu.ReluMask` for the
layout).

As for the kernels of :mod:`fastrelu._loops`, each is a C function of a
chunk, ``chunk(args, lo, hi)``, that the thread pool can run from any
thread, and one compiled entry, called by Python, runs it serially or on the
pool.  The unit of the chunks is the mask's byte (four elements): a chunk
writes whole bytes, so that two threads never write into one.

The arrays are 1-D and contiguous: the input (``x`` or ``grad``), the
output (``y`` or the gradient) and the packed bits.  Rows of ``L`` elements
take ``Lb = ceil(L / 4)`` bytes each; a call whose rows hold a multiple of
4 elements (or that has one row) is one row of all the elements.  The
argument block holds, in int64 words: the input's, the output's and the
bits' addresses, ``L``, ``Lb``, the subgradient at 0 (a float64), and the
word that asks for non-temporal stores (``_loops.STREAM_WORD``).

:mod:`fastrelu._mask` is the Python side; importing this module imports
Numba.
"""

import math

from numba import carray, types
from numba.extending import register_jitable

from . import _formulas
from ._loops import STREAM_WORD, _scalar, run_chunks
from ._native import (
    STAGING_BYTES,
    load,
    pointer,
    stack_codes,
    stack_staging,
    stack_words,
    store,
    store_floats,
    stream_fence,
    stream_line_unaligned,
)

SOURCE, TARGET, BITS, ROW, ROW_BYTES, AT_ZERO = 0, 1, 2, 3, 4, 5
_U8, _U32 = types.uint8, types.uint32
# Bytes of the mask per pass through the buffer of codes (one a byte).
BATCH = 128


@register_jitable(forceinline=True)
def _view(address, n, T):
    """The *n* elements of *T* at *address*, as an array.  (The nested
    functions below call this, not the intrinsics themselves: Numba's cache
    keys a closure by its variables' pickles, and an intrinsic pickles
    differently in every process.)"""
    return carray(pointer(address, T), n)


@register_jitable(forceinline=True)
def _copy(destination, source, nbytes, T, size):
    """Copy *nbytes* bytes of elements of *T* (plain stores)."""
    n = nbytes // size
    d, s = carray(pointer(destination, T), n), carray(pointer(source, T), n)
    for i in range(n):
        d[i] = s[i]


@register_jitable(forceinline=True)
def _flush(destination, source, nbytes, T, size):
    """Copy *nbytes* bytes from the staging buffer at *source* to
    *destination*: the whole 64-byte lines of the destination with
    non-temporal stores, the partial ones at the ends with plain stores."""
    end = destination + nbytes
    first = (destination + 63) & -64
    last = end & -64
    if first >= last:
        _copy(destination, source, nbytes, T, size)
        return
    _copy(destination, source, first - destination, T, size)
    for line in range(first, last, 64):
        stream_line_unaligned(line, source + (line - destination))
    _copy(last, source + (last - destination), end - last, T, size)


def chunk_function(direction, T, fold):
    """The chunk function of the mask's *direction* ("forward": relu and
    pack; "backward": the gradient from the mask) for the Numba type *T*,
    as a Python function for ``numba.cfunc``.  *fold* is the subgradient at
    0 compiled in as a constant, or None (read from the argument block)."""
    size = T.bitwidth // 8
    per = STAGING_BYTES // (4 * size)  # bytes of the mask per staged batch
    f0 = math.nan if fold is None else fold
    relu, relu_code, relu_grad_code = _formulas.relu, _formulas.relu_code, _formulas.relu_grad_code

    # Each batch of up to BATCH bytes of the mask goes through a buffer of
    # one code a byte, so that both loops vectorise: the codes of a mask
    # byte spread to (or gather from) the four bytes of a 32-bit word.  The
    # arrays of a batch start at its first element, so that every index is
    # a loop counter that LLVM knows to be in range.
    if direction == "forward":

        def batch(source, target, bits, k, a, words, one):
            x, y = _view(source, 4 * k, T), _view(target, 4 * k, T)
            for j in range(4 * k):
                v = x[j]
                y[j] = relu(v)
                one[j] = relu_code(v)
            m = _view(bits, k, _U8)
            for i in range(k):
                w = words[i]
                m[i] = (w | w >> _U32(6) | w >> _U32(12) | w >> _U32(18)) & _U32(0xFF)

        def tail(source, target, bits, n, a):
            x, y = _view(source, n, T), _view(target, n, T)
            c = 0
            for k in range(n):
                v = x[k]  # before y[k] is written: y may be x
                y[k] = relu(v)
                c |= relu_code(v) << (2 * k)
            _view(bits, 1, _U8)[0] = c

    elif direction == "backward":

        def batch(source, target, bits, k, a, words, one):
            m = _view(bits, k, _U8)
            for i in range(k):
                v = _U32(m[i])
                words[i] = (v | v << _U32(6) | v << _U32(12) | v << _U32(18)) & _U32(0x03030303)
            g, out = _view(source, 4 * k, T), _view(target, 4 * k, T)
            for j in range(4 * k):
                out[j] = relu_grad_code(one[j], g[j], a)

        def tail(source, target, bits, n, a):
            g, out = _view(source, n, T), _view(target, n, T)
            c = _view(bits, 1, _U8)[0]
            for k in range(n):
                out[k] = relu_grad_code((c >> (2 * k)) & 3, g[k], a)

    else:
        raise ValueError(f"direction must be 'forward' or 'backward', not {direction!r}")
    tag = f"mask_{direction}_{T}_{'folded' if fold is not None else 'general'}"
    batch.__name__ = batch.__qualname__ = f"batch_{tag}"
    batch = register_jitable(forceinline=True)(batch)

    def quads(source, target, bits, count, a, codes):
        """*count* bytes of the mask and their elements, BATCH bytes at a time."""
        words, one = _view(codes, BATCH, _U32), _view(codes, 4 * BATCH, _U8)
        done = 0
        while done < count:
            k = min(BATCH, count - done)
            batch(source + 4 * done * size, target + 4 * done * size, bits + done, k, a, words, one)
            done += k

    quads.__name__ = quads.__qualname__ = f"quads_{tag}"
    tail.__name__ = tail.__qualname__ = f"tail_{tag}"
    quads = register_jitable(forceinline=True)(quads)
    tail = register_jitable(forceinline=True)(tail)

    def run_quads(source, target, bits, count, a, codes, staging):
        """*count* bytes of the mask and their 4 * count elements, through
        the buffer *codes*; with non-temporal stores through the buffer
        *staging* unless it is 0."""
        if staging == 0 or count < per:
            quads(source, target, bits, count, a, codes)
            return
        # Staged a batch at a time, in a buffer on a line boundary (where
        # the vector stores do not straddle two lines), and written a whole
        # line of the destination at a time past the caches.  A byte of
        # the mask need not start a line of the destination (float64 on
        # 16-byte boundaries), so the lines are read from the buffer
        # wherever they lie in it.
        # First the bytes up to a line boundary of the destination, where
        # there is one (a float32 array on a 16-byte boundary): the batches
        # then write whole lines only.
        done = 0
        for head in range(min(count, 64 // (4 * size) if size < 16 else 1)):
            if (target + head * 4 * size) & 63 == 0:
                quads(source, target, bits, head, a, codes)
                done = head
                break
        while done < count:
            k = min(per, count - done)
            quads(source + done * 4 * size, staging, bits + done, k, a, codes)
            _flush(target + done * 4 * size, staging, k * 4 * size, T, size)
            done += k

    run_quads.__name__ = run_quads.__qualname__ = f"run_{tag}"
    run_quads = register_jitable(forceinline=True)(run_quads)

    def chunk(args, lo, hi):
        source, target, bits = load(args + 8 * SOURCE), load(args + 8 * TARGET), load(args + 8 * BITS)
        row, row_bytes = load(args + 8 * ROW), load(args + 8 * ROW_BYTES)
        a = _scalar(args, AT_ZERO, T, f0)
        staging = stack_staging() if load(args + 8 * STREAM_WORD) != 0 else 0
        codes = stack_codes()
        full = row // 4  # whole bytes of a row
        r = lo // row_bytes
        b = lo
        while b < hi:
            start = r * row_bytes
            row_end = min(hi, start + row_bytes)
            full_end = min(row_end, start + full)
            e = r * row + 4 * (b - start)  # the element of byte b's first code
            if full_end > b:
                run_quads(source + e * size, target + e * size, bits + b, full_end - b, a, codes, staging)
                e += 4 * (full_end - b)
                b = full_end
            if b < row_end:  # the row's last byte, of row % 4 elements
                tail(source + e * size, target + e * size, bits + b, row - 4 * full, a)
                b += 1
            r += 1
        if staging != 0:
            stream_fence()

    chunk.__name__ = chunk.__qualname__ = f"chunk_{tag}"
    return chunk


def entry(function, plan, source, target, bits, row, row_bytes, nbytes, at_zero):
    """Run the chunk function at address *function* over the *nbytes*
    bytes of the mask, serially or on the pool as *plan* asks (see
    ``_loops.run_chunks``); ``NEEDS_PLAN`` where Python must act first.  The
    arrays come as their bytes (1-D uint8 views), so that one entry serves
    every dtype."""
    args = stack_words()
    store(args + 8 * SOURCE, source.ctypes.data)
    store(args + 8 * TARGET, target.ctypes.data)
    store(args + 8 * BITS, bits.ctypes.data)
    store(args + 8 * ROW, row)
    store(args + 8 * ROW_BYTES, row_bytes)
    store_floats(args + 8 * AT_ZERO, (at_zero,))
    return run_chunks(function, plan, args, nbytes, target.size)
