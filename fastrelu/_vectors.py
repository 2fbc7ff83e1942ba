"""Loads and stores of the GPU kernels: 16 bytes at a time where they can.

    vload(p, j)          the W elements W*j ... W*j + W - 1 of p, as a tuple
    vstore(p, j, lanes)  store W lanes there
    load1(p, i)          element i of p
    store1(p, i, value)  store one element
    W = width(dtype)     16 // itemsize: 4 float32, 8 float16, 2 float64

Loaded values come in the compute dtype (float16 as float32, which Numba's
float16 arithmetic would otherwise call out of line for); stored values are
converted to the element type.  On a GPU ``p`` is a raw pointer
(``CPointer``), and ``vload``/``vstore`` require a 16-byte-aligned address,
which the caller checks: they become single ``ld.global.v4``/``v2`` and
``st.global.v4``/``v2`` instructions, which memory-bound kernels need to
approach the bandwidth of HBM (scalar accesses, 4 bytes a thread, leave it
idle).  Indices are widened to 64 bits before they are scaled.

In Numba's CUDA simulator ``p`` is a device array and these are plain
Python functions with the same meaning, so that the kernels built on them
run there unchanged.
"""

import numpy as np
from numba import config, types

VECTOR_BYTES = 16
VECTOR_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def width(dtype):
    """Elements per 16-byte access for *dtype*."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


if config.ENABLE_CUDASIM:  # type: ignore[attr-defined]

    def _load_type(dtype):
        return np.float32 if dtype == np.float16 else dtype.type

    def vload(p, j):
        w, load = width(p.dtype), _load_type(p.dtype)
        return tuple(load(p[w * j + k]) for k in range(w))

    def vstore(p, j, lanes):
        w = width(p.dtype)
        for k in range(w):
            p[w * j + k] = lanes[k]

    def load1(p, i):
        return _load_type(p.dtype)(p[i])

    def store1(p, i, value):
        p[i] = value

else:
    from llvmlite import ir
    from numba.cuda.extending import intrinsic

    _I16, _I32, _I64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)

    def _element(p):
        """(element type, compute type) of pointer type *p*, or None."""
        if not isinstance(p, types.CPointer) or not isinstance(p.dtype, types.Number):
            return None
        return p.dtype, types.float32 if p.dtype == types.float16 else p.dtype

    def _address(context, builder, p, index_type, index, scale):
        """The address of element *scale* * *index* of *p*, in 64-bit arithmetic."""
        wide = context.cast(builder, index, index_type, types.int64)
        return builder.gep(p, [builder.mul(wide, ir.Constant(_I64, scale))], inbounds=True)

    @intrinsic
    def vload(typingctx, p, j):
        element = _element(p)
        if element is None or element[0] not in (types.float16, types.float32, types.float64):
            return None
        dtype, compute = element
        w = VECTOR_BYTES // (dtype.bitwidth // 8)
        sig = types.UniTuple(compute, w)(p, j)

        def codegen(context, builder, sig, args):
            base = _address(context, builder, args[0], sig.args[1], args[1], w)
            if dtype == types.float16:
                # As <4 x i32>: <8 x i16> becomes two 8-byte loads.  Each
                # word holds two halves, the lower address in the low bits.
                words = builder.load(builder.bitcast(base, ir.VectorType(_I32, 4).as_pointer()), align=16)
                lanes = []
                for k in range(4):
                    word = builder.extract_element(words, ir.Constant(_I32, k))
                    lanes.append(builder.trunc(word, _I16))
                    lanes.append(builder.trunc(builder.lshr(word, ir.Constant(_I32, 16)), _I16))
            else:
                vector = ir.VectorType(context.get_value_type(dtype), w)
                loaded = builder.load(builder.bitcast(base, vector.as_pointer()), align=16)
                lanes = [builder.extract_element(loaded, ir.Constant(_I32, k)) for k in range(w)]
            lanes = [context.cast(builder, lane, dtype, compute) for lane in lanes]
            return context.make_tuple(builder, sig.return_type, lanes)

        return sig, codegen

    @intrinsic
    def vstore(typingctx, p, j, lanes):
        element = _element(p)
        if element is None or element[0] not in (types.float16, types.float32, types.float64):
            return None
        dtype = element[0]
        w = VECTOR_BYTES // (dtype.bitwidth // 8)
        if not (isinstance(lanes, types.BaseTuple) and len(lanes) == w):
            return None
        sig = types.void(p, j, lanes)

        def codegen(context, builder, sig, args):
            base = _address(context, builder, args[0], sig.args[1], args[1], w)
            values = [
                context.cast(builder, builder.extract_value(args[2], k), ty, dtype)
                for k, ty in enumerate(sig.args[2])
            ]
            if dtype == types.float16:  # two halves to a word, as vload reads them
                values = [
                    builder.or_(
                        builder.zext(values[k], _I32),
                        builder.shl(builder.zext(values[k + 1], _I32), ir.Constant(_I32, 16)),
                    )
                    for k in range(0, w, 2)
                ]
            vector = ir.Constant(ir.VectorType(values[0].type, len(values)), ir.Undefined)
            for k, value in enumerate(values):
                vector = builder.insert_element(vector, value, ir.Constant(_I32, k))
            builder.store(vector, builder.bitcast(base, vector.type.as_pointer()), align=16)
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def load1(typingctx, p, i):
        element = _element(p)
        if element is None:
            return None
        dtype, compute = element
        sig = compute(p, i)

        def codegen(context, builder, sig, args):
            address = _address(context, builder, args[0], sig.args[1], args[1], 1)
            return context.cast(builder, builder.load(address), dtype, compute)

        return sig, codegen

    @intrinsic
    def store1(typingctx, p, i, value):
        element = _element(p)
        if element is None:
            return None
        sig = types.void(p, i, value)

        def codegen(context, builder, sig, args):
            address = _address(context, builder, args[0], sig.args[1], args[1], 1)
            builder.store(context.cast(builder, args[2], sig.args[2], element[0]), address)
            return context.get_dummy_value()

        return sig, codegen
