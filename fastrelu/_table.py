"""The table of kernels: every elementwise operation, described once.

An entry gives an operation's name (that of its public function), its scalar
formula (a function of :mod:`fastrelu._formulas`, named here so that
importing the table does not import Numba), its array operands, the
formula's scalar parameters, how the public keyword arguments become those
scalars and the result's dtype, the size from which the CPU splits a call
across threads, and the scalar values worth a loop compiled with them as
constants.  The CPU loops (:mod:`fastrelu._loops`), the CUDA kernels
(:mod:`fastrelu._cuda`), the public functions' plumbing
(:mod:`fastrelu._front`), and the tests' and benchmarks' lists of operations
all come from :data:`KERNELS`.
"""

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import _elementwise as ew


@dataclass(frozen=True)
class Kernel:
    """One elementwise operation.

    Attributes
    ----------
    name : str
        The public function's name.
    formula : str
        The scalar formula in :mod:`fastrelu._formulas`, called as
        ``formula(*operand_values, *scalars)``.
    operands : tuple of str
        The array arguments, in order.
    scalars : tuple of str
        The formula's scalar parameters, after the operands.
    types : callable
        ``types(arrays, objects, **params)`` -> ``(result dtype, compute
        dtype, scalars)``: from the operands as arrays and as passed (Python
        numbers promote weakly) and the public keyword arguments; raises on
        bad ones.  The scalars are Python floats, exact in the compute dtype.
    parallel_min_size : int
        Elements from which a CPU call is split across threads (the default
        of ``config.PARALLEL_MIN_SIZE``).
    folded : dict
        Scalar values for which the CPU compiles a loop that has them as
        constants, used whenever a call's scalars have those values.
    streams : bool
        Whether the CPU writes outputs of ``config.STREAM_MIN_BYTES`` or
        more with non-temporal stores: for kernels bound by memory, not by
        arithmetic.
    """

    name: str
    formula: str
    operands: tuple
    scalars: tuple
    types: Callable
    parallel_min_size: int
    folded: dict = field(default_factory=dict)
    streams: bool = False


def _same_as_x(arrays, objects):
    result = arrays[0].dtype
    return result, ew.compute_dtype(result), ()


def _masked_gradient(arrays, objects, *, at_zero):
    (x, grad), (x_obj, grad_obj) = arrays, objects
    result = ew.promote(x.dtype, x_obj, grad.dtype, grad_obj)
    at_zero = ew.real_param("at_zero", at_zero, 0.0, 1.0)
    if result.kind in "iu" and at_zero not in (0.0, 1.0):
        raise ValueError(f"at_zero must be 0 or 1 for a result of integer dtype {result}, got {at_zero!r}")
    compute = ew.compute_dtype(result)
    # Rounded to the result dtype first, so that a float16 result is the
    # float16 product; the float32 product of two float16 numbers is exact.
    return result, compute, (float(compute.type(result.type(at_zero))),)


def _softplus_scalars(result, beta, threshold):
    """The dtype softplus kernels compute in, and their scalars
    ``(beta_hi, beta_lo, threshold)`` in that dtype."""
    beta = ew.real_param("beta", beta, 0.0, math.inf, lo_open=True, hi_open=True)
    compute = ew.compute_dtype(result)
    tiny, huge = ew.normal_range(compute)
    if not tiny <= beta <= huge:
        compute = ew.FLOAT64  # a beta float32 cannot hold: compute in float64
    threshold = math.inf if threshold is None else ew.real_param("threshold", threshold)
    T = compute.type
    beta_hi = T(beta)
    with np.errstate(over="ignore"):  # a threshold beyond the dtype's range acts as inf
        scalars = (beta_hi, T(beta - float(beta_hi)), T(threshold))
    return result, compute, tuple(float(s) for s in scalars)


def _softplus(arrays, objects, *, beta, threshold):
    return _softplus_scalars(ew.float_result(arrays[0].dtype), beta, threshold)


def _softplus_gradient(arrays, objects, *, beta, threshold):
    # The dtype NumPy would give grad * sigmoid(x), sigmoid's dtype being softplus's.
    result = ew.promote(ew.float_result(arrays[0].dtype), None, arrays[1].dtype, objects[1])
    return _softplus_scalars(result, beta, threshold)


# beta = 1, the default: the exact product beta * x folds away.
_UNIT_BETA = {"beta_hi": 1.0, "beta_lo": 0.0}

KERNELS = {
    kernel.name: kernel
    for kernel in (
        Kernel("relu", "relu", ("x",), (), _same_as_x, 1 << 14, streams=True),
        Kernel(
            "relu_backward", "relu_grad", ("x", "grad"), ("at_zero",), _masked_gradient, 1 << 14, streams=True
        ),
        Kernel(
            "softplus",
            "softplus",
            ("x",),
            ("beta_hi", "beta_lo", "threshold"),
            _softplus,
            1 << 12,
            _UNIT_BETA,
        ),
        Kernel(
            "softplus_backward",
            "softplus_grad",
            ("x", "grad"),
            ("beta_hi", "beta_lo", "threshold"),
            _softplus_gradient,
            1 << 12,
            _UNIT_BETA,
        ),
    )
}
