"""The GPU path: numba.cuda kernels over the same scalar formulas, and the
run that feeds them.

Importing this module imports ``numba.cuda``; fastrelu imports it only when
a call runs on the GPU.  Each kernel is compiled lazily, per dtype, on its
first launch (an eager signature would need a GPU at import).  Indices are
64-bit (``cuda.grid(1)`` widens the block offset), so arrays of more than
2**31 elements are covered.  Kernels are launched on the caller's stream
(the default stream unless ``stream=`` names one), and nothing waits for
them unless the result must come back to the host.
"""

import ctypes

import numpy as np
from numba import config, cuda
from numba.extending import register_jitable

from . import _formulas as f
from ._device import DeviceOperand
from ._table import KERNELS

# Threads per block, and the most blocks a launch asks for: a grid-stride
# loop covers any size, and a small grid keeps the simulator fast.
THREADS = 256
MAX_BLOCKS = 65535
SIMULATOR_MAX_BLOCKS = 4


def grid_kernel(kernel):
    """The grid-stride CUDA kernel of *kernel* (an entry of
    :data:`fastrelu._table.KERNELS`), as a Python function for ``cuda.jit``:
    it takes the operands, the output and the tuple of scalars."""
    formula = getattr(f, kernel.formula)
    if len(kernel.operands) == 1:

        def grid(x, out, scalars):
            for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
                out[i] = formula(x[i], *scalars)

    elif len(kernel.operands) == 2:

        def grid(x, y, out, scalars):
            for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
                out[i] = formula(x[i], y[i], *scalars)

    else:
        raise ValueError(f"{kernel.name}: a kernel has 1 or 2 operands, not {len(kernel.operands)}")
    return grid


@register_jitable
def _position(i, offset, strides, shape):
    """Element offset of the C-order index *i* of *shape* in a strided array."""
    pos = offset
    for d in range(len(shape) - 1, -1, -1):
        pos += (i % shape[d]) * strides[d]
        i //= shape[d]
    return pos


def gather_kernel(src, offset, strides, shape, dst):
    # A contiguous copy of a strided, broadcast or other-dtype operand.
    for i in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        dst[i] = src[_position(i, offset, strides, shape)]


def scatter_kernel(src, dst, offset, strides, shape):
    # The contiguous result into a strided or other-dtype out.
    for i in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        dst[_position(i, offset, strides, shape)] = src[i]


def fill_kernel(dst, value):
    for i in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        dst[i] = value


_HELPERS = {"gather": gather_kernel, "scatter": scatter_kernel, "fill": fill_kernel}
_dispatchers = {}


def dispatcher(name):
    """The lazily compiling ``cuda.jit`` dispatcher of kernel *name*: an
    entry of :data:`fastrelu._table.KERNELS` or a layout helper."""
    disp = _dispatchers.get(name)
    if disp is None:
        func = _HELPERS[name] if name in _HELPERS else grid_kernel(KERNELS[name])
        disp = _dispatchers[name] = cuda.jit(func)
    return disp


def launch(name, n, args, stream=0):
    """Launch kernel *name* over *n* elements, asynchronously on *stream*."""
    if n == 0:
        return
    most = SIMULATOR_MAX_BLOCKS if config.ENABLE_CUDASIM else MAX_BLOCKS
    blocks = max(1, min(most, -(-n // THREADS)))
    dispatcher(name)[blocks, THREADS, stream](*args)


def as_stream(stream):
    """A Numba stream for *stream*: None (the default stream), a Numba
    stream, or a CuPy or PyTorch stream (by its handle)."""
    if stream is None:
        return cuda.default_stream()
    handle = getattr(stream, "ptr", None) or getattr(stream, "cuda_stream", None)
    if handle is not None and not hasattr(stream, "synchronize_async"):
        return cuda.external_stream(handle)
    return stream


class _Span:
    """A CUDA array interface for the 1-D memory an operand spans."""

    def __init__(self, ptr, n, dtype):
        self.__cuda_array_interface__ = {
            "shape": (n,),
            "typestr": dtype.str,
            "data": (ptr, False),
            "strides": None,
            "version": 3,
        }


def span_array(op):
    """A 1-D Numba device array over the memory *op* spans, from its lowest address."""
    lo, n = op.span()
    if config.ENABLE_CUDASIM:
        # The simulator's "device" memory is host memory.
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        buf = (ctypes.c_char * (n * op.dtype.itemsize)).from_address(lo)
        return FakeCUDAArray(np.frombuffer(buf, op.dtype, count=n))
    return cuda.as_cuda_array(_Span(lo, n, op.dtype))


def _layout(op, shape):
    """(element offset, element strides) that read *op* broadcast to *shape*."""
    lo, _ = op.span()
    itemsize = op.dtype.itemsize
    strides = [0] * (len(shape) - op.ndim) + [
        0 if n == 1 else s // itemsize for n, s in zip(op.shape, op.strides)
    ]
    return (op.ptr - lo) // itemsize, tuple(strides)


def _overlap(a, b):
    (alo, an), (blo, bn) = a.span(), b.span()
    return alo < blo + bn * b.dtype.itemsize and blo < alo + an * a.dtype.itemsize


def _same_view(a, b):
    return a.ptr == b.ptr and a.strides == b.strides and a.shape == b.shape and a.dtype == b.dtype


def _input_view(a, shape, compute, target, stream):
    """A 1-D contiguous device array of input *a* as the kernel reads it."""
    n = int(np.prod(shape, dtype=np.int64))
    if not isinstance(a, DeviceOperand):  # a host scalar
        buf = cuda.device_array(n, compute, stream=stream)
        launch("fill", n, (buf, compute.type(a[()])), stream)
        return buf
    if a.dtype == compute and a.shape == shape and a.c_contiguous():
        if target is None or not _overlap(a, target) or _same_view(a, target):
            return span_array(a)
    buf = cuda.device_array(n, compute, stream=stream)
    offset, strides = _layout(a, shape)
    launch("gather", n, (span_array(a), offset, strides, shape, buf), stream)
    return buf


def _upload(a, stream):
    """A host array as a device operand (a copy); host scalars stay as they are."""
    if a.ndim == 0:
        return a
    return DeviceOperand(cuda.to_device(np.ascontiguousarray(a), stream=stream))


def _wrap(array, like):
    """*array* as the kind of array the caller passed: CuPy, PyTorch or Numba."""
    kind = like.kind if like is not None else "numba"
    if kind == "cupy":
        import cupy

        return cupy.asarray(array)
    if kind == "torch":
        import torch

        return torch.as_tensor(array, device="cuda")
    return array


def run(kernel, inputs, out, shape, result, scalars, compute, stream=None):
    """Compute *kernel* on the GPU; the GPU twin of ``_elementwise.run``.

    *inputs* are DeviceOperands, host scalars (0-d arrays), or, where the
    caller asked for ``device="cuda"``, host arrays, which are copied in; the
    result then comes back to the host.  *out* is the object the caller
    passed.  All checks on the arguments must already have passed.
    """
    stream = as_stream(stream)
    host_out = out is not None and isinstance(out, np.ndarray)
    like = next((a for a in inputs if isinstance(a, DeviceOperand)), None)
    # device="cuda" with host operands only: copy in, and the result back out.
    host_call = like is None and (out is None or host_out)
    inputs = [_upload(a, stream) if isinstance(a, np.ndarray) else a for a in inputs]

    n = int(np.prod(shape, dtype=np.int64))
    if out is None or host_out:
        target = DeviceOperand(cuda.device_array(shape, result, stream=stream))
    else:
        target = DeviceOperand(out)
    direct = result == compute and target.c_contiguous()
    if n:
        out_flat = span_array(target) if direct else cuda.device_array(n, compute, stream=stream)
        views = [_input_view(a, shape, compute, target, stream) for a in inputs]
        # The scalars in the compute dtype: constants of another type would
        # turn float32 arithmetic into float64.
        launch(kernel.name, n, (*views, out_flat, tuple(compute.type(s) for s in scalars)), stream)
        if not direct:
            offset, strides = _layout(target, shape)
            launch("scatter", n, (out_flat, span_array(target), offset, strides, shape), stream)

    if host_call:
        host = target.obj.copy_to_host(stream=stream)
        stream.synchronize()
        if host_out:
            np.copyto(out, host)
            return out
        return host[()] if host.ndim == 0 else host
    return out if out is not None else _wrap(target.obj, like)
