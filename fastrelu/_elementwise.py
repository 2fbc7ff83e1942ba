"""The NumPy-compatible front of the CPU kernels.

Turns array-likes into arrays, checks dtypes, shapes and ``out`` before
anything is written, and hands the kernels 1-D contiguous views: zero-copy
when every operand is contiguous in one memory order with the compute dtype,
otherwise through contiguous buffers (broadcasting, strides, dtype casts,
float16, partial overlap with ``out``).
"""

import math
import numbers
from typing import Any

import numpy as np

from . import _device, _kernels, _kinds, config

_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)
_SUPPORTED_FLOATS = (_FLOAT16, _FLOAT32, FLOAT64)


def as_array(name, value):
    """``np.asarray(value)`` in native byte order, or a device array's
    :class:`~fastrelu._device.DeviceOperand`, refusing dtypes the kernels
    cannot compute."""
    if type(value) is not np.ndarray and _device.is_device_array(value):
        arr = _device.DeviceOperand(value)
        if isinstance(arr.dtype, np.dtype) and not arr.dtype.isnative:
            raise TypeError(f"{name} is a device array of non-native byte order {arr.dtype.str}")
    else:
        arr = value if type(value) is np.ndarray else np.asarray(value)
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
    dt = arr.dtype
    if supported(dt):
        return arr
    raise TypeError(
        f"{name} has dtype {dt}, which is not supported "
        "(expected float16, float32, float64 or an integer dtype)"
    )


def supported(dt):
    """Whether the kernels compute on dtype *dt* (float16/32/64, integers)."""
    return dt in _SUPPORTED_FLOATS or (isinstance(dt, np.dtype) and dt.kind in "iu")


def compute_dtype(result):
    """The dtype the kernels compute in: Numba's CPU target has no float16."""
    return _FLOAT32 if result == _FLOAT16 else result


_log1p_dtypes: dict[Any, Any] = {}


def float_result(dt):
    """The floating dtype ``np.log1p`` gives for input dtype *dt*."""
    res = _log1p_dtypes.get(dt)
    if res is None:
        res = _log1p_dtypes[dt] = np.log1p(np.zeros((), dt)).dtype
    return res


_normal_ranges: dict[Any, Any] = {}


def normal_range(dt):
    """``(smallest normal, largest finite)`` of floating dtype *dt*, as floats."""
    rng = _normal_ranges.get(dt)
    if rng is None:
        info = np.finfo(dt)
        rng = _normal_ranges[dt] = (float(info.smallest_normal), float(info.max))
    return rng


def promote(x_dtype, x_obj, grad_dtype, grad_obj):
    """NumPy's promotion of ``x`` and ``grad``, where a Python scalar given as
    ``x_obj`` or ``grad_obj`` promotes weakly, as in NumPy 2.

    A Python int that does not fit the promoted integer dtype is an
    ``OverflowError``, as in NumPy.
    """
    if x_dtype == grad_dtype:
        return x_dtype
    weak = [
        obj if type(obj) in (int, float) else dt for obj, dt in ((x_obj, x_dtype), (grad_obj, grad_dtype))
    ]
    result = np.result_type(*weak)
    for obj in (x_obj, grad_obj):
        if type(obj) is int:
            result.type(obj)  # raises OverflowError if out of range
    return result


def broadcast_shape(names, arrays):
    """The shape of the result of operands *arrays*, named *names*."""
    shape = arrays[0].shape
    if all(a.shape == shape for a in arrays):
        return shape
    # NumPy's rule, for as many dimensions as arrays may have
    # (np.broadcast_shapes stops at 32).
    ndim = max(a.ndim for a in arrays)
    result = [1] * ndim
    for a in arrays:
        for axis, n in enumerate(a.shape, ndim - a.ndim):
            if n != result[axis]:
                if result[axis] != 1 and n != 1:
                    shapes = ", ".join(f"{name} has shape {b.shape}" for name, b in zip(names, arrays))
                    raise ValueError(f"{' and '.join(names)} cannot be broadcast together: {shapes}")
                if n != 1:
                    result[axis] = n
    return tuple(result)


def short_repr(value, most=40):
    """``repr(value)``, its middle cut out where it is longer than *most*
    characters (an int of 400 digits)."""
    text = repr(value)
    return text if len(text) <= most else f"{text[: most // 2]}...{text[-most // 4 :]}"


def real_param(name, value, lo=-math.inf, hi=math.inf, lo_open=False, hi_open=False):
    """Check a scalar keyword argument and return it as a Python float."""
    if type(value) is not float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise ValueError(f"{name} must be a real number, got {short_repr(value)}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond the largest float
        raise ValueError(f"{name} must be a real number a float can hold, got {short_repr(value)}") from None
    if math.isnan(v) or not (lo < v if lo_open else lo <= v) or not (v < hi if hi_open else v <= hi):
        bounds = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be a number in {bounds}, got {short_repr(value)}")
    return v


def check_out(out, shape, dtype):
    """Raise unless *out* can receive a result of *shape* and *dtype*; return
    it as the kernels take it (a device array as its
    :class:`~fastrelu._device.DeviceOperand`)."""
    if _device.is_device_array(out):
        out = _device.DeviceOperand(out)
        readonly = out.readonly
    elif isinstance(out, np.ndarray):
        readonly = not out.flags.writeable
    else:
        raise TypeError(f"out must be a NumPy or device array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, but the result has shape {shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, but the result has dtype {dtype}")
    if readonly:
        raise ValueError("out is read-only")
    return out


def _order(a):
    """'C' or 'F' if *a* is contiguous in that memory order (C first), else None."""
    flags = a.flags
    if flags.c_contiguous:
        return "C"
    if flags.f_contiguous:
        return "F"
    return None


def _flat(a, order):
    """The 1-D view of *a*, contiguous in memory order *order* (0-d gives 1 element)."""
    return a if a.ndim == 1 else a.reshape(-1, order=order)


def _same_view(a, b):
    if a is b:
        return True
    ia, ib = a.__array_interface__, b.__array_interface__
    return ia["data"][0] == ib["data"][0] and a.strides == b.strides


def _direct_view(a, shape, compute, order, out):
    """The 1-D contiguous view of input *a* in memory order *order* that the
    kernels can read as it is, or None where *a* needs converting (another
    dtype, order or shape) or partly overlaps *out*."""
    if order is not None and a.dtype == compute and a.shape == shape and _order(a) == order:
        if out is None or not np.may_share_memory(a, out) or _same_view(a, out):
            return _flat(a, order)
    return None


def _converted_whole(kernel, inputs, views, target, compute, order, scalars):
    """*kernel* on arrays of at most ``config.BUFFER_SIZE`` elements, with
    the inputs whose *views* are None converted (cast, broadcast, gathered
    or copied away from an overlap) into contiguous arrays of *compute* in
    memory order *order*; a result *order* None goes through one too.  The
    cheapest way for small arrays, and no more memory than the buffers of
    :func:`_converted_in_pieces`."""
    shape = target.shape
    flat_order = order or "C"
    arrays = []
    for a, view in zip(inputs, views):
        if view is None:
            view = np.empty(shape, compute, order=flat_order)
            np.copyto(view, a, casting="unsafe")
            view = _flat(view, flat_order)
        arrays.append(view)
    result = _flat(target, order) if order is not None else np.empty(target.size, compute)
    _kernels.launch(kernel, [*arrays, result], scalars)
    if order is None:
        np.copyto(target, result.reshape(shape), casting="unsafe")


def _converted_in_pieces(kernel, inputs, target, compute, scalars):
    """*kernel* on arrays of any size through NumPy's buffered iterator: the
    operands that need it converted, broadcast or gathered
    ``config.BUFFER_SIZE`` elements at a time, in memory order, so that the
    extra memory is a few buffers whatever the size of the arrays."""
    operands = [*inputs, target]
    with np.nditer(
        operands,
        flags=_BUFFERED_FLAGS,
        op_flags=[_READ] * len(inputs) + [_WRITE],
        op_dtypes=[compute] * len(operands),
        casting="unsafe",
        order="K",
        buffersize=config.BUFFER_SIZE,
    ) as pieces:
        for piece in pieces:
            _kernels.launch(kernel, list(piece), scalars)


# nditer's flags for _converted_in_pieces: 1-D contiguous pieces of every
# operand, converted to the compute dtype where needed, in memory order; an
# input that partly overlaps the output is copied first, an exact overlap
# (relu(x, out=x)) is not.
_BUFFERED_FLAGS = ["external_loop", "buffered", "growinner", "copy_if_overlap", "zerosize_ok"]
_READ = ["readonly", "contig", "aligned", "overlap_assume_elementwise"]
_WRITE = ["writeonly", "contig", "aligned", "overlap_assume_elementwise"]


def same_dtype_types(kernel, dtype, params):
    """``(compute dtype, scalars)`` of *kernel* on operands that are all
    arrays of *dtype*, with keyword arguments *params* (a dict), where the
    result keeps *dtype*; None where it does not, or where the dtype or the
    arguments are wrong (the general path then says how)."""
    if not (dtype.isnative and supported(dtype)):
        return None
    stand_ins = [np.empty(0, dtype)] * len(kernel.operands)
    try:
        result, compute, scalars = kernel.types(stand_ins, stand_ins, **params)
    except (TypeError, ValueError):
        return None
    return (compute, scalars) if result == dtype else None


# The GPU's common case: (kernel name, dtype, *keyword arguments) -> what
# same_dtype_types gives.  Keyword arguments must be Python numbers or None.
_DEVICE_FAST: dict[Any, Any] = {}
_DEVICE_FAST_MAX = 4096
KEY_TYPES = frozenset({float, int, type(None)})  # keyword arguments that serve as keys


def _device_call(kernel, objects, out, stream, params):
    """The common GPU call, checked in few steps: operands and ``out`` are
    device arrays of one type, dtype and shape, and the keyword arguments
    Python numbers; the result keeps the dtype.  ``NotImplemented`` where
    anything else applies, for the general path."""
    kind = type(objects[0])
    if out is not None and (type(out) is not kind or not _device.is_device_array(out)):
        return NotImplemented
    for obj in objects[1:]:
        if type(obj) is not kind or not _device.is_device_array(obj):
            return NotImplemented
    for value in params.values():
        if type(value) not in KEY_TYPES:
            return NotImplemented
    operands = [_device.DeviceOperand(obj) for obj in objects]
    dtype, shape = operands[0].dtype, operands[0].shape
    for op in operands:
        if op.dtype != dtype or op.shape != shape:
            return NotImplemented
    if out is not None:
        out = _device.DeviceOperand(out)
        if out.dtype != dtype or out.shape != shape or out.readonly:
            return NotImplemented
    if not isinstance(dtype, np.dtype):
        return NotImplemented
    key = (kernel.name, dtype, *params.values())
    typed = _DEVICE_FAST.get(key, False)
    if typed is False:
        typed = same_dtype_types(kernel, dtype, params)
        if len(_DEVICE_FAST) >= _DEVICE_FAST_MAX:
            _DEVICE_FAST.clear()
        _DEVICE_FAST[key] = typed
    if typed is None:
        return NotImplemented
    from . import _cuda

    compute, scalars = typed
    return _cuda.run(kernel, operands, out, shape, dtype, scalars, compute, stream)


def call(kernel, objects, out, device, stream, params):
    """The general path of *kernel*'s public function: operands *objects*
    (as passed), ``out``, ``device``, ``stream`` and the kernel's keyword
    arguments *params* (a dict).  Checks everything before anything is
    written, then computes."""
    adapted = _kinds.adapt(kernel.operands, objects, out)
    if adapted is not None:
        objects, out, finish = adapted
        return finish(call(kernel, tuple(objects), out, device, stream, params))
    if device is None and type(objects[0]) is not np.ndarray and _device.is_device_array(objects[0]):
        done = _device_call(kernel, objects, out, stream, params)
        if done is not NotImplemented:
            return done
    named = dict(zip(kernel.operands, objects))
    place = _device.placement(device, out, named)
    if place == "dask":
        from . import _dask

        return _dask.apply(kernel, objects, out, device, stream, params)
    arrays = [as_array(name, obj) for name, obj in named.items()]
    shape = broadcast_shape(kernel.operands, arrays)
    result, compute, scalars = kernel.types(arrays, objects, **params)
    if out is not None:
        out = check_out(out, shape, result)
    return run(kernel, arrays, out, shape, result, scalars, compute, place, stream)


def run(kernel, inputs, out, shape, result, scalars, compute, place="cpu", stream=None):
    """Compute *kernel* over *inputs* into *out* (or a new array) and return it.

    The kernel computes in *compute*, on the CPU or, for *place* "cuda", on
    the GPU (on *stream*), with *scalars* (Python floats exact in
    *compute*).  *out* is as :func:`check_out` returns it.  All checks on
    the arguments must already have passed: from here on the only errors
    are those of memory allocation.
    """
    if place == "cuda":
        from . import _cuda

        return _cuda.run(kernel, inputs, out, shape, result, scalars, compute, stream)
    if out is None:
        # Follow the inputs' memory order, as NumPy's ufuncs do.
        order = "F"
        for a in inputs:
            if _order(a) != "F":
                order = "C"
                break
        target = np.empty(shape, result, order=order)
    else:
        target = out
        order = _order(out)
    n = target.size
    if n == 0:
        return target

    if order is None or result != compute:
        order = None  # the result goes through a buffer
    views = [_direct_view(a, shape, compute, order, out) for a in inputs]
    if order is not None and all(v is not None for v in views):
        _kernels.launch(kernel, [*views, _flat(target, order)], scalars)
    elif n <= config.BUFFER_SIZE:
        _converted_whole(kernel, inputs, views, target, compute, order, scalars)
    else:
        _converted_in_pieces(kernel, inputs, target, compute, scalars)
    if out is None and target.ndim == 0:
        return target[()]
    return target
