"""ReLU masks: the forward that keeps 2 bits per element for the backward,
and the backward that reads them.

:class:`ReluMask` holds the packed sign classes of ``x``; its layout is
documented there and in ``docs/memory.md``.  The public functions
(:mod:`fastrelu.activations`) check their arguments here, before anything
is written, and run the CPU code of :mod:`fastrelu._maskloops`, the GPU
kernels of :mod:`fastrelu._cuda`, or a Dask graph over the blocks.
"""

from typing import Any

import numpy as np

from . import _device, _elementwise, _kernels, _threads, config
from ._table import _masked_gradient

_UINT8 = np.dtype(np.uint8)
_FORWARD, _BACKWARD = "forward", "backward"
# The kernel whose config.PARALLEL_MIN_SIZE (in elements) a direction uses.
_SIZE_OF = {_FORWARD: "relu", _BACKWARD: "relu_backward"}


def packed_shape(shape):
    """The shape of the bits of a mask of an array of *shape*: 2 bits per
    element along the last axis, ``shape[:-1] + (ceil(shape[-1] / 4),)``; a
    0-d array packs as one of shape ``(1,)``."""
    shape = tuple(int(n) for n in shape)
    if not shape:
        return (1,)
    return shape[:-1] + ((shape[-1] + 3) // 4,)


def _dtype_of(a):
    """The NumPy dtype of array *a* (a NumPy, GPU or Dask array, or a tensor)."""
    if type(a) is not np.ndarray and not _device.is_dask_array(a) and _device.is_device_array(a):
        return _device.DeviceOperand(a).dtype
    return np.dtype(a.dtype)


def _check_bits(name, bits, shape):
    """Raise unless array *bits* (named *name*) can hold the mask of an
    array of *shape*: uint8, of the packed shape."""
    if _dtype_of(bits) != _UINT8:
        raise TypeError(f"{name} has dtype {bits.dtype}, but a mask's bits are uint8")
    if tuple(bits.shape) != packed_shape(shape):
        raise ValueError(
            f"{name} has shape {tuple(bits.shape)}, but a mask of shape {shape} packs into "
            f"{packed_shape(shape)} (4 elements a byte along the last axis)"
        )


def _where(a):
    """ "dask", "cuda" or "cpu": where array *a* lives."""
    if _device.is_dask_array(a):
        return "dask"
    if type(a) is not np.ndarray and _device.is_device_array(a):
        return "cuda"
    return "cpu"


class ReluMask:
    """The sign class of every element of an array ``x``, 2 bits each: what
    :func:`fastrelu.relu_backward_from_mask` needs to compute
    ``relu_backward(x, grad, at_zero=...)`` without ``x``.

    Made by :func:`fastrelu.relu_with_mask`; can also be built from bits kept
    elsewhere (a file, another library), which are checked for their dtype
    and shape.

    Parameters
    ----------
    bits : ndarray, GPU array or Dask array of uint8
        The packed codes, of shape :attr:`packed_shape` (see Notes).
    shape : tuple of int
        The shape of ``x``.
    dtype : dtype
        The dtype of ``x``: the backward's result dtype is NumPy's promotion
        of it and ``grad``'s, as for :func:`fastrelu.relu_backward`.

    Attributes
    ----------
    bits : ndarray, GPU array or Dask array of uint8
        The packed codes, on the device of ``x``.
    shape : tuple of int
        The shape of ``x``.
    dtype : numpy.dtype
        The dtype of ``x``.

    Raises
    ------
    TypeError
        If ``bits`` is not an array of dtype uint8, or ``dtype`` is not one
        fastrelu computes on.
    ValueError
        If ``bits`` does not have the packed shape of ``shape``.

    Notes
    -----
    Each element's code: 0 where ``x < 0``, 1 where ``x > 0``, 2 where
    ``x == 0`` (``+0.0`` or ``-0.0``), 3 where ``x`` is NaN.  The codes are
    packed along the last axis, four to a byte, as
    ``np.packbits(..., axis=-1, bitorder="little")`` packs bits eight to a
    byte: element ``j`` of a row (``x[..., j]``) is in bits ``2*(j % 4)``
    (low) and ``2*(j % 4) + 1`` (high) of byte ``j // 4`` of that row, so
    ``bits.shape == shape[:-1] + (ceil(shape[-1] / 4),)``, C order.  The
    unused bits of a row's last byte are 0.  A 0-d ``x`` packs as shape
    ``(1,)``.  Reading codes back in NumPy::

        codes = (bits[..., :, None] >> np.array([0, 2, 4, 6], np.uint8)) & 3
        codes = codes.reshape(*bits.shape[:-1], -1)[..., : shape[-1]]

    Examples
    --------
    >>> import numpy as np, fastrelu
    >>> y, mask = fastrelu.relu_with_mask(np.array([-1.0, 0.0, 2.0, np.nan, 5.0]))
    >>> mask
    ReluMask(shape=(5,), dtype=float64, 2 bytes)
    >>> [f"{b:08b}" for b in mask.bits]  # codes 3, 1, 2, 0 in a byte from its high bits; then 1
    ['11011000', '00000001']
    """

    __slots__ = ("bits", "shape", "dtype")

    def __init__(self, bits: Any, shape: tuple, dtype: Any):
        shape = tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise ValueError(f"a mask's shape has no negative lengths, got {shape}")
        dtype = np.dtype(dtype)
        if not _elementwise.supported(dtype):
            raise TypeError(
                f"a mask's dtype is that of x: float16, float32, float64 or an integer dtype, got {dtype}"
            )
        if not hasattr(bits, "shape") or not hasattr(bits, "dtype"):
            raise TypeError(f"bits must be an array of uint8, got {type(bits).__name__}")
        _check_bits("bits", bits, shape)
        self.bits, self.shape, self.dtype = bits, shape, dtype

    @classmethod
    def _made(cls, bits, shape, dtype):
        """A mask of bits this package made, unchecked."""
        mask = object.__new__(cls)
        mask.bits, mask.shape, mask.dtype = bits, shape, dtype
        return mask

    @property
    def packed_shape(self) -> tuple:
        """The shape of :attr:`bits`."""
        return packed_shape(self.shape)

    @property
    def nbytes(self) -> int:
        """The bytes :attr:`bits` takes."""
        return int(np.prod(self.packed_shape))

    def __repr__(self) -> str:
        return f"ReluMask(shape={self.shape}, dtype={self.dtype}, {self.nbytes} bytes)"


def _layout(shape, n):
    """``(row, row_bytes, nbytes)`` of the compiled code for a C-ordered
    array of *shape* with *n* elements: a row that holds a multiple of 4
    elements, or a single row, is packed as one row of all *n*."""
    row = shape[-1] if shape else 1
    rows = n // row if row else 0
    if row % 4 == 0 or rows <= 1:
        return n, (n + 3) // 4, (n + 3) // 4
    return row, (row + 3) // 4, rows * ((row + 3) // 4)


def _function(direction, dtype, fold):
    key = ("mask", direction, dtype, fold)

    def make():
        import numba

        from ._maskloops import chunk_function

        return _kernels._compile_cfunc(
            chunk_function(direction, numba.from_dtype(dtype), fold),
            numba.types.void(numba.types.int64, numba.types.int64, numba.types.int64),
        )

    return _kernels._get(key, make)


def _entry():
    def make():
        from numba import types

        from ._maskloops import entry

        data = types.Array(types.uint8, 1, "C")
        return _kernels._compile_jit(
            entry, (types.int64,) * 2 + (data,) * 3 + (types.int64,) * 3 + (types.float64,)
        )

    _kernels._pool_runner()  # the symbol the entry calls, before the entry is compiled or loaded
    return _kernels._get(("mask", "entry"), make)


# (direction, dtype, folded subgradient, parallel size) -> (chunk function, entry, plan)
_LAUNCHES: dict[Any, Any] = {}


def _as_bytes(a):
    """The bytes of C-contiguous array *a*, as a 1-D uint8 view."""
    return a.reshape(-1).view(_UINT8)


def _launch(direction, source, target, bits, at_zero):
    """Run *direction*'s code over C-contiguous *source*, *target* (of one
    shape and dtype) and *bits* (their packed shape)."""
    n = target.size
    if n == 0:
        return
    fold = 0.0 if at_zero == 0 else None
    row, row_bytes, nbytes = _layout(target.shape, n)
    min_size = config.PARALLEL_MIN_SIZE[_SIZE_OF[direction]]
    key = (direction, target.dtype, fold, min_size)
    compiled = _LAUNCHES.get(key)
    if compiled is None:
        compiled = _LAUNCHES[key] = (
            _function(direction, target.dtype, fold),
            _entry(),
            _threads.request(max(1, min_size // 4)),
        )
    function, entry, request = compiled
    arrays = (_as_bytes(source), _as_bytes(target), _as_bytes(bits), row, row_bytes, nbytes)
    if entry(function, request, *arrays, at_zero) == _kernels.NEEDS_PLAN:
        _kernels.run_planned(entry, function, arrays, at_zero, request)


def _shares(a, b):
    return a is not None and b is not None and np.may_share_memory(a, b)


def _contiguous_input(a, shape, compute, out):
    """*a* as a C-contiguous array of *compute* and *shape*: itself where it
    is one and overlaps *out* exactly or not at all, else a copy."""
    if (
        a.dtype == compute
        and a.shape == shape
        and a.flags.c_contiguous
        and (not _shares(a, out) or _elementwise._same_view(a, out))
    ):
        return a
    converted = np.empty(shape, compute)
    np.copyto(converted, a, casting="unsafe")
    return converted


def _check_mask_out(mask_out, shape, others):
    """The uint8 array *mask_out* names (itself, or a ReluMask's bits),
    checked to receive the bits of a mask of *shape*."""
    bits = mask_out.bits if isinstance(mask_out, ReluMask) else mask_out
    if not isinstance(bits, np.ndarray) and not _device.is_device_array(bits):
        raise TypeError(f"mask_out must be a ReluMask or an array of uint8, got {type(mask_out).__name__}")
    _check_bits("mask_out", bits, shape)
    if isinstance(bits, np.ndarray):
        if not bits.flags.writeable:
            raise ValueError("mask_out is read-only")
        if not bits.flags.c_contiguous:
            raise ValueError("mask_out must be C-contiguous")
        if any(_shares(bits, a) for a in others if isinstance(a, np.ndarray)):
            raise ValueError("mask_out shares memory with x or out")
    return bits


def relu_with_mask(x, out=None, *, mask_out=None, device=None, stream=None):
    """The public :func:`fastrelu.relu_with_mask` (documented there)."""
    host = np.ndarray
    bits_out = getattr(mask_out, "bits", mask_out)
    on_host = (
        device is None
        and type(x) is host
        and (out is None or type(out) is host)
        and (bits_out is None or type(bits_out) is host)
    )
    for a in () if on_host else (x, out, bits_out):
        if a is not None and _where(a) != "cpu":
            if _where(a) == "dask" or _device.is_dask_array(x):
                return _dask_forward(x, out, mask_out, device, stream)
            return _device_forward(x, out, mask_out, device, stream)
    if device == "cuda":
        return _device_forward(x, out, mask_out, device, stream)
    if device not in (None, "cpu"):
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    x = _elementwise.as_array("x", x)
    shape, dtype = x.shape, x.dtype
    if out is not None:
        out = _elementwise.check_out(out, shape, dtype)
    bits = None if mask_out is None else _check_mask_out(mask_out, shape, (x, out))
    if bits is None:
        bits = np.empty(packed_shape(shape), _UINT8)
    y = _run(_FORWARD, x, out, bits, dtype, _elementwise.compute_dtype(dtype), 0.0)
    return y, ReluMask._made(bits, shape, dtype)


def _run(direction, source, out, bits, result, compute, at_zero):
    """*direction*'s code on the CPU over *source* (``x`` or ``grad``, of
    the mask's shape or broadcasting to it) and C-contiguous *bits*, into
    *out* or a new array of dtype *result*, computed in *compute*; returns
    the result as the public functions do (a scalar for a 0-d one without
    ``out``).  All checks must already have passed."""
    shape = source.shape
    source = _contiguous_input(source, shape, compute, out)
    direct = out is not None and out.dtype == compute and out.flags.c_contiguous
    target = out if direct else np.empty(shape, compute)
    _launch(direction, source, target, bits, at_zero)
    if out is not None and not direct:
        np.copyto(out, target, casting="unsafe")
        target = out
    elif out is None and compute != result:
        target = target.astype(result)
    if out is None and target.ndim == 0:
        target = target[()]
    return target


def _check_mask(mask):
    if not isinstance(mask, ReluMask):
        raise TypeError(
            f"mask must be a fastrelu.ReluMask (made by fastrelu.relu_with_mask), got {type(mask).__name__}"
        )


def _check_grad_shape(mask_shape, grad_shape):
    ndim = max(len(mask_shape), len(grad_shape))
    padded = (1,) * (ndim - len(grad_shape)) + tuple(grad_shape)
    full = (1,) * (ndim - len(mask_shape)) + tuple(mask_shape)
    if len(grad_shape) > len(mask_shape) or any(g not in (1, m) for g, m in zip(padded, full)):
        raise ValueError(
            f"grad of shape {tuple(grad_shape)} does not broadcast to the mask's shape {tuple(mask_shape)}"
        )


def backward_types(mask, grad, at_zero):
    """``(result dtype, compute dtype, scalars)`` of the backward from
    *mask* with *grad* (as passed: a Python number promotes weakly)."""
    grad_array = grad if hasattr(grad, "dtype") else np.asarray(grad)
    return _masked_gradient((np.empty(0, mask.dtype), grad_array), (None, grad), at_zero=at_zero)


_TYPES: dict[Any, Any] = {}  # (mask dtype, grad dtype, at_zero) -> backward_types of NumPy arrays


def relu_backward_from_mask(mask, grad, out=None, *, at_zero=0.0, device=None, stream=None):
    """The public :func:`fastrelu.relu_backward_from_mask` (documented there)."""
    _check_mask(mask)
    host = np.ndarray
    on_host = (
        device is None
        and type(mask.bits) is host
        and type(grad) is host
        and (out is None or type(out) is host)
    )
    for a in () if on_host else (mask.bits, grad, out):
        if a is not None and _where(a) != "cpu":
            if any(_device.is_dask_array(b) for b in (mask.bits, grad, out)):
                return _dask_backward(mask, grad, out, at_zero, device, stream)
            return _device_backward(mask, grad, out, at_zero, device, stream)
    if device == "cuda":
        return _device_backward(mask, grad, out, at_zero, device, stream)
    if device not in (None, "cpu"):
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    grad_obj = grad
    grad = _elementwise.as_array("grad", grad)
    shape = mask.shape
    _check_grad_shape(shape, grad.shape)
    key = (mask.dtype, grad.dtype, at_zero) if on_host and type(at_zero) in (float, int) else None
    typed = _TYPES.get(key) if key else None
    if typed is None:
        typed = backward_types(mask, grad_obj, at_zero)
        if key and len(_TYPES) < 4096:
            _TYPES[key] = typed
    result, compute, (a,) = typed
    if out is not None:
        out = _elementwise.check_out(out, shape, result)
    bits = mask.bits
    if not bits.flags.c_contiguous or _shares(bits, out):
        bits = np.ascontiguousarray(bits).copy()
    return _run(_BACKWARD, np.broadcast_to(grad, shape), out, bits, result, compute, a)


def _device_forward(x, out, mask_out, device, stream):
    from . import _cuda

    return _cuda.relu_with_mask(x, out, mask_out, device, stream)


def _device_backward(mask, grad, out, at_zero, device, stream):
    from . import _cuda

    return _cuda.relu_backward_from_mask(mask, grad, out, at_zero, device, stream)


def _dask_forward(x, out, mask_out, device, stream):
    from . import _dask

    return _dask.relu_with_mask(x, out, mask_out, device, stream)


def _dask_backward(mask, grad, out, at_zero, device, stream):
    from . import _dask

    return _dask.relu_backward_from_mask(mask, grad, out, at_zero, device, stream)
