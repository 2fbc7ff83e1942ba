"""The public activations: ReLU and softplus, forward and backward.

Each function here gives a kernel of :data:`fastrelu._table.KERNELS` its
signature and documentation; :func:`fastrelu._front.elementwise` makes the
function that runs it.
"""

from __future__ import annotations  # the signatures below are copied as text

from collections.abc import Callable
from typing import Any, TypeVar

from numpy.typing import ArrayLike

from ._front import elementwise
from ._table import KERNELS

_F = TypeVar("_F", bound=Callable[..., Any])

_DEVICE_PARAMETERS = """device : {None, "cpu", "cuda"}, optional
        Where to compute.  ``None`` follows the data: GPU arrays (objects
        with ``__cuda_array_interface__``: Numba device arrays, CuPy arrays,
        PyTorch CUDA tensors) run on the GPU and give a GPU array of the same
        kind; host arrays run on the CPU.  ``"cuda"`` with host arrays copies
        them to the GPU, computes there and returns a NumPy array.  A GPU
        call runs on the GPU that holds its arrays; a CuPy or PyTorch call
        allocates its result (and any temporary) through that library.
    stream : optional
        The CUDA stream for a GPU call (a Numba, CuPy or PyTorch stream, or
        any object with ``__cuda_stream__``).  If not given: the stream the
        arrays' ``__cuda_array_interface__`` names, PyTorch's current stream
        for tensors, else the legacy default stream.  Work queued on other
        streams the arrays name is waited for on the GPU.  Ignored on the
        CPU."""


def _public(func: _F) -> _F:
    """The public function of the kernel named like *func*, with *func*'s
    signature and docstring; the parameters every function shares are filled in."""
    func.__doc__ = (func.__doc__ or "").replace("{device_parameters}", _DEVICE_PARAMETERS)
    return elementwise(KERNELS[func.__name__])(func)


@_public
def relu(x: ArrayLike, out: Any = None, *, device: str | None = None, stream: Any = None) -> Any:
    """Rectified linear unit, ``max(x, 0)``, element by element.

    Parameters
    ----------
    x : array_like
        Input of a floating (float16, float32, float64) or integer dtype,
        any shape and memory layout.
    out : ndarray, optional
        Array of the result's shape and dtype that receives the result; it may
        be ``x`` itself.
    {device_parameters}

    Returns
    -------
    ndarray or scalar
        ``x`` where ``x > 0``, else ``+0`` (also for ``-0.0``); NaN stays NaN.
        Same dtype as ``x``.  A scalar when ``x`` is a scalar and ``out`` is
        not given; ``out`` when it is given.

    Raises
    ------
    RuntimeError
        For ``device="cuda"`` where no CUDA GPU can be used.
    TypeError
        For bool, complex, object, string and other non-numeric dtypes, an
        ``out`` of the wrong dtype, or host and GPU arrays in one call.
    ValueError
        For an ``out`` of the wrong shape or a read-only ``out``, or GPU
        arrays on two devices.

    Examples
    --------
    >>> import numpy as np, fastrelu
    >>> fastrelu.relu(np.array([-2.0, -0.0, 0.5, 3.0]))
    array([0. , 0. , 0.5, 3. ])
    """


@_public
def relu_backward(
    x: ArrayLike,
    grad: ArrayLike,
    out: Any = None,
    *,
    at_zero: float = 0.0,
    device: str | None = None,
    stream: Any = None,
) -> Any:
    """Gradient of ReLU: the upstream gradient masked by ``x > 0``.

    Parameters
    ----------
    x : array_like
        The input the forward ReLU saw (floating or integer dtype).
    grad : array_like
        The upstream gradient ``dL/dy``; broadcasts against ``x``.
    out : ndarray, optional
        Array of the result's shape and dtype that receives the result; it may
        be ``x`` or ``grad`` itself.
    at_zero : float, default 0.0
        The subgradient used where ``x == 0`` (either sign of zero), a number
        in ``[0, 1]``, the subdifferential of ReLU at 0.  The default 0 is
        the choice of PyTorch, TensorFlow/Keras and JAX.
    {device_parameters}

    Returns
    -------
    ndarray or scalar
        ``grad`` where ``x > 0``; ``at_zero * grad`` where ``x == 0``; exactly
        0 where ``x < 0``, whatever ``grad`` holds there (also with
        ``at_zero=0`` at ``x == 0``); NaN where ``x`` is NaN.  The dtype is
        NumPy's promotion of ``x`` and ``grad``.

    Raises
    ------
    RuntimeError
        For ``device="cuda"`` where no CUDA GPU can be used.
    ValueError
        If ``at_zero`` is not a number in ``[0, 1]`` (for an integer result,
        not 0 or 1), if ``x`` and ``grad`` do not broadcast, for an ``out``
        of the wrong shape or a read-only one, or GPU arrays on two devices.
    TypeError
        For unsupported dtypes, an ``out`` of the wrong dtype, or host and
        GPU arrays in one call.
    OverflowError
        If ``x`` or ``grad`` is a Python int that the integer result dtype
        cannot hold, as in NumPy.

    Notes
    -----
    ReLU has no derivative at 0: its one-sided derivatives are 0 and 1, and
    every value in between is a valid subgradient.  The choice rarely matters
    in training, because pre-activations of exactly 0 are rare in floating
    point; it can where they are common (quantised or integer inputs, sparse
    inputs with zero biases).  ``at_zero`` is converted to the result dtype
    before it multiplies ``grad``.

    Examples
    --------
    >>> import numpy as np, fastrelu
    >>> x = np.array([-1.0, 0.0, 1.0, 2.0])
    >>> fastrelu.relu_backward(x, np.ones(4))
    array([0., 0., 1., 1.])
    >>> fastrelu.relu_backward(x, np.ones(4), at_zero=1.0)
    array([0., 1., 1., 1.])
    """


@_public
def softplus(
    x: ArrayLike,
    out: Any = None,
    *,
    beta: float = 1.0,
    threshold: float | None = None,
    device: str | None = None,
    stream: Any = None,
) -> Any:
    """Softplus, ``log(1 + exp(beta * x)) / beta``, element by element.

    Computed without overflow and accurate to a few units in the last place
    (ULP) over the whole floating range.

    Parameters
    ----------
    x : array_like
        Input of a floating dtype; integers are promoted as ``np.log1p``
        promotes them.
    out : ndarray, optional
        Array of the result's shape and dtype that receives the result; it may
        be ``x`` itself.
    beta : float, default 1.0
        Sharpness, finite and > 0.  As ``beta`` grows, softplus tends to
        ReLU.  float16 and float32 inputs are computed in float32, or in
        float64 where ``beta`` lies outside float32's normal range.
    threshold : float, optional
        PyTorch parity mode: where ``beta * x > threshold`` the result is
        ``x`` itself, as in ``torch.nn.functional.softplus`` (whose default is
        20).  The default ``None`` evaluates the exact function everywhere.
    {device_parameters}

    Returns
    -------
    ndarray or scalar
        softplus of ``x``: ``+inf`` for ``+inf``, ``0`` for ``-inf``, NaN for
        NaN, ``x`` itself for the largest finite floats.

    Raises
    ------
    RuntimeError
        For ``device="cuda"`` where no CUDA GPU can be used.
    ValueError
        If ``beta`` is not finite and > 0, if ``threshold`` is NaN or not a
        number, for an ``out`` of the wrong shape or a read-only one, or GPU
        arrays on two devices.
    TypeError
        For unsupported dtypes, an ``out`` of the wrong dtype, or host and
        GPU arrays in one call.

    Examples
    --------
    >>> import numpy as np, fastrelu
    >>> fastrelu.softplus(np.array([-1000.0, 0.0, 100.0]))
    array([  0.        ,   0.69314718, 100.        ])
    """


@_public
def softplus_backward(
    x: ArrayLike,
    grad: ArrayLike,
    out: Any = None,
    *,
    beta: float = 1.0,
    threshold: float | None = None,
    device: str | None = None,
    stream: Any = None,
) -> Any:
    """Gradient of softplus: ``grad * sigmoid(beta * x)``.

    Parameters
    ----------
    x : array_like
        The input the forward softplus saw.
    grad : array_like
        The upstream gradient; broadcasts against ``x``.
    out : ndarray, optional
        Array of the result's shape and dtype that receives the result; it may
        be ``x`` or ``grad`` itself.
    beta : float, default 1.0
        As in :func:`softplus`.
    threshold : float, optional
        PyTorch parity mode: ``grad`` itself where ``beta * x > threshold``.
    {device_parameters}

    Returns
    -------
    ndarray or scalar
        ``grad * sigmoid(beta * x)``, computed without overflow for every
        ``x``: ``grad`` at ``+inf``, ``0 * grad`` at ``-inf``.  The dtype is
        NumPy's promotion of softplus's dtype for ``x`` with ``grad``: that
        of ``grad * sigmoid(x)``.

    Raises
    ------
    RuntimeError
        For ``device="cuda"`` where no CUDA GPU can be used.
    ValueError
        As :func:`softplus`, and if ``x`` and ``grad`` do not broadcast.
    TypeError
        For unsupported dtypes, an ``out`` of the wrong dtype, or host and
        GPU arrays in one call.

    Examples
    --------
    >>> import numpy as np, fastrelu
    >>> fastrelu.softplus_backward(np.array([-800.0, 0.0, 800.0]), np.ones(3))
    array([0. , 0.5, 1. ])
    """
