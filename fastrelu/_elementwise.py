"""The NumPy-compatible front of the CPU kernels.

Turns array-likes into arrays, checks dtypes, shapes and ``out`` before
anything is written, and hands the kernels 1-D contiguous views: zero-copy
when every operand is contiguous in one memory order with the compute dtype,
otherwise through contiguous buffers (broadcasting, strides, dtype casts,
float16, partial overlap with ``out``).
"""

import math
import numbers

import numpy as np

from . import _kernels, _threads

_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_SUPPORTED_FLOATS = (_FLOAT16, _FLOAT32, _FLOAT64)


def as_array(name, value, integers_ok=True):
    """``np.asarray(value)``, refusing dtypes the kernels cannot compute."""
    arr = value if type(value) is np.ndarray else np.asarray(value)
    dt = arr.dtype
    if dt in _SUPPORTED_FLOATS or (integers_ok and dt.kind in "iu"):
        return arr
    allowed = "float16, float32, float64 or integer" if integers_ok else "float16, float32 or float64"
    raise TypeError(f"{name} has dtype {dt}, which is not supported (expected {allowed})")


def compute_dtype(result):
    """NumPy cannot compute in float16 on the CPU via Numba: use float32."""
    return _FLOAT32 if result == _FLOAT16 else result


_log1p_dtypes = {}


def float_result(dt):
    """The floating dtype ``np.log1p`` gives for input dtype *dt*."""
    res = _log1p_dtypes.get(dt)
    if res is None:
        res = _log1p_dtypes[dt] = np.log1p(np.zeros((), dt)).dtype
    return res


def promote(x, grad, grad_obj):
    """NumPy's promotion of ``x`` and ``grad``; Python scalars promote weakly."""
    if x.dtype == grad.dtype:
        return x.dtype
    if type(grad_obj) in (int, float):
        return np.result_type(x.dtype, grad_obj)
    return np.result_type(x.dtype, grad.dtype)


def broadcast_shape(x, grad):
    if x.shape == grad.shape:
        return x.shape
    try:
        return np.broadcast_shapes(x.shape, grad.shape)
    except ValueError:
        raise ValueError(
            f"x and grad cannot be broadcast together: x has shape {x.shape}, "
            f"grad has shape {grad.shape}"
        ) from None


def real_param(name, value, lo=-math.inf, hi=math.inf, lo_open=False):
    """Check a scalar keyword argument and return it as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if math.isnan(v) or v < lo or v > hi or (lo_open and v == lo):
        bounds = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise ValueError(f"{name} must lie in {bounds}, got {value!r}")
    return v


def check_out(out, shape, dtype):
    """Raise unless *out* can receive a result of *shape* and *dtype*."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, but the result has shape {shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, but the result has dtype {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")


def _flat(a, order):
    """A 1-D view of *a* in memory order *order*, or None if there is none."""
    if a.ndim == 1:
        return a if a.flags.c_contiguous else None
    if order == "C" and a.flags.c_contiguous:
        return a.reshape(-1)
    if order == "F" and a.flags.f_contiguous:
        return a.reshape(-1, order="F")
    return None


def _same_view(a, b):
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
    )


def _gather(a, shape, dtype, order):
    """A contiguous copy of *a*, broadcast to *shape* and cast to *dtype*."""
    buf = np.empty(shape, dtype, order=order)
    np.copyto(buf, a, casting="unsafe")
    return _flat(buf, order) if buf.ndim else buf.reshape(1)


def run(name, inputs, out, shape, result, scalars=()):
    """Compute loop *name* over *inputs* into *out* (or a new array) and return it.

    All checks on the arguments must already have passed: from here on the
    only errors are those of memory allocation.
    """
    compute = compute_dtype(result)
    if out is None:
        fortran = all(a.flags.f_contiguous and not a.flags.c_contiguous for a in inputs)
        target = np.empty(shape, result, order="F" if fortran else "C")
        fresh = True
    else:
        target = out
        fresh = False
    n = target.size
    if n == 0:
        return target

    order = "F" if (target.flags.f_contiguous and not target.flags.c_contiguous) else "C"
    direct = result == compute and (target.ndim == 0 or _flat(target, order) is not None)
    out_flat = (_flat(target, order) if target.ndim else target.reshape(1)) if direct else None
    if out_flat is None:
        direct = False
        order = "C"
        out_flat = np.empty(n, compute)

    flat_inputs = []
    for a in inputs:
        view = None
        if a.dtype == compute and a.shape == shape and direct:
            view = _flat(a, order) if a.ndim else a.reshape(1)
            if view is not None and not fresh and np.may_share_memory(a, target):
                if not _same_view(a, target):
                    view = None  # partial overlap: read from a copy
        if view is None:
            view = _gather(a, shape, compute, order)
        flat_inputs.append(view)

    kernel = _kernels.get(name, compute)
    _threads.run(name, kernel, n, flat_inputs + [out_flat], scalars)

    if not direct:
        np.copyto(target, out_flat.reshape(shape), casting="unsafe")
    if out is None and target.ndim == 0:
        return target[()]
    return target
