"""The public functions' plumbing: a fast path and the general path.

:func:`elementwise` turns a documented signature into the public function
of a kernel of :data:`fastrelu._table.KERNELS`.  The function it makes
tries the common case first, a NumPy array of a compiled dtype with the
result's dtype (and, for a backward pass, a ``grad`` of the same dtype and
number of dimensions), optionally an ``out`` of that dtype, and scalar
keyword arguments: it looks up what to call in :data:`FAST` and calls the
compiled entry directly, which finishes the checks (one shape, contiguous,
no partial overlap) in compiled code.  Everything else, and anything the
entry declines, takes the general path (:func:`fastrelu._elementwise.call`),
which handles every array-like, layout, dtype, device and error.

The function is generated from source text (as :mod:`dataclasses` makes
``__init__``), because a call on a small array costs about as much as the
Python around it: one level of function call is a fifth of the budget.
"""

import inspect
from typing import Any

import numpy as np

from . import _elementwise, _kernels, _threads, config

# Per kernel: (dtype, ndim, *keyword arguments) -> (entry, chunk function,
# scalars), or None where the fast path does not apply.
FAST: dict[str, dict[Any, Any]] = {}
_FAST_MAX = 4096  # entries; beyond, FAST starts again (varying keyword arguments)
_SHARED = ("device", "stream")

_TEMPLATE = """
def {name}{signature}:
    if type(x) is ndarray and device is None{operand_checks}{param_checks}:
        dtype = x.dtype
        fast = FAST.get((dtype, x.ndim, {params}))
        if fast is None and (dtype, x.ndim, {params}) not in FAST:
            fast = learn(KERNEL, FAST, dtype, x.ndim, {{{param_dict}}})
        if fast is not None and (
            out is None or (type(out) is ndarray and out.dtype is dtype and out.flags.writeable)
        ):
            entry, function, scalars, first = fast
            target = empty(x.shape, dtype) if out is None else out
            status = entry(function, first, {operands}, target, scalars)
            if not status:
                return target
            if status == NEEDS_PLAN:
                run_planned(entry, function, ({operands}, target), scalars, first)
                return target
    return general(KERNEL, ({operands},), out, device, stream, {{{param_dict}}})
"""


def _forget():
    """Drop every fast-path entry: they hold the parallel sizes of ``config``."""
    for table in FAST.values():
        table.clear()


config._listeners.append(_forget)


def learn(kernel, fast, dtype, ndim, params):
    """The entry of *fast* (``FAST[kernel.name]``) for arrays of *dtype* and
    *ndim* dimensions with keyword arguments *params* (a dict), stored there
    and returned."""
    record = None
    typed = _elementwise.same_dtype_types(kernel, dtype, params) if ndim > 0 else None
    if typed is not None and typed[0] == dtype:  # None: the general path raises the error
        # The entry runs calls below the kernel's parallel size serially.
        first = _threads.request(config.PARALLEL_MIN_SIZE[kernel.name])
        record = (*_kernels.fast(kernel, dtype, ndim, typed[1]), first)
    if len(fast) >= _FAST_MAX:
        fast.clear()
    fast[(dtype, ndim, *params.values())] = record
    return record


def elementwise(kernel):
    """Decorator: the public function of *kernel*, with the decorated
    function's signature and docstring (its body is not used).

    The signature lists the operands (``x``, then any others, as in the
    kernel), ``out``, and keyword-only arguments: the kernel's own, then
    ``device`` and ``stream``.
    """

    def build(stub):
        signature = inspect.signature(stub)
        names = list(signature.parameters)
        n = len(kernel.operands)
        if tuple(names[:n]) != kernel.operands or names[n] != "out" or tuple(names[-2:]) != _SHARED:
            raise TypeError(
                f"{stub.__name__}{signature}: expected {kernel.operands}, out, ..., device, stream"
            )
        params = names[n + 1 : -2]
        others = kernel.operands[1:]
        source = _TEMPLATE.format(
            name=kernel.name,
            signature=str(signature),
            operand_checks="".join(
                f" and type({a}) is ndarray and {a}.dtype is x.dtype and {a}.ndim == x.ndim" for a in others
            ),
            param_checks="".join(f" and type({p}) in KEY_TYPES" for p in params),
            params="".join(f"{p}, " for p in params),
            param_dict=", ".join(f"{p!r}: {p}" for p in params),
            operands=", ".join(kernel.operands),
        )
        namespace = {
            "ndarray": np.ndarray,
            "empty": np.empty,
            "FAST": FAST.setdefault(kernel.name, {}),
            "KEY_TYPES": _elementwise.KEY_TYPES,  # keyword arguments that serve as keys of FAST
            "KERNEL": kernel,
            "learn": learn,
            "run_planned": _kernels.run_planned,
            "general": _elementwise.call,
            "NEEDS_PLAN": _kernels.NEEDS_PLAN,
        }
        exec(compile(source, f"<fastrelu.{kernel.name}>", "exec"), namespace)
        func = namespace[kernel.name]
        func.__doc__ = stub.__doc__
        func.__module__ = stub.__module__
        func.__qualname__ = stub.__qualname__
        return func

    return build
