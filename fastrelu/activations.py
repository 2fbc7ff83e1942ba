"""The public activations: ReLU and softplus, forward and backward, and
ReLU's backward from its output or from a packed mask.

Each function here gives a kernel of :data:`fastrelu._table.KERNELS` its
signature and documentation; :func:`fastrelu._front.elementwise` makes the
function that runs it.
"""

from __future__ import annotations  # the signatures below are copied as text

from collections.abc import Callable
from typing import Any, TypeVar

from numpy.typing import ArrayLike

from . import _mask
from ._elementwise import real_param
from ._front import elementwise
from ._mask import ReluMask
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


_FROM_OUTPUT_AT_ZERO = (
    "relu_backward_from_output takes at_zero=0 only: y = relu(x) is 0 both where x == 0 and where "
    "x < 0, so the subgradient at 0 cannot be told from the 0 for x < 0; keep x, or a mask "
    "(relu_with_mask, relu_backward_from_mask), for another at_zero"
)


def relu_backward_from_output(
    y: ArrayLike,
    grad: ArrayLike,
    out: Any = None,
    *,
    at_zero: float = 0.0,
    device: str | None = None,
    stream: Any = None,
) -> Any:
    """Gradient of ReLU computed from its output ``y = relu(x)`` instead of ``x``.

    ``y > 0`` exactly where ``x > 0`` and ``y`` is NaN exactly where ``x``
    is, so the result is ``relu_backward(x, grad)``, bit for bit, with the
    default ``at_zero=0``.  A training loop can then compute
    ``relu(x, out=x)`` in place and keep only ``y`` for the backward pass,
    instead of both ``x`` and ``y``.

    Parameters
    ----------
    y : array_like
        The output of :func:`relu` (floating or integer dtype).
    grad : array_like
        The upstream gradient ``dL/dy``; broadcasts against ``y``.
    out : ndarray, optional
        Array of the result's shape and dtype that receives the result; it may
        be ``y`` or ``grad`` itself.
    at_zero : float, default 0.0
        Must be 0: ``y == 0`` where ``x == 0`` and where ``x < 0`` alike, so
        no other subgradient at 0 can be applied.
    {device_parameters}

    Returns
    -------
    ndarray or scalar
        ``grad`` where ``y > 0``, exactly 0 where ``y == 0`` (whatever
        ``grad`` holds), NaN where ``y`` is NaN; the dtype is NumPy's
        promotion of ``y`` and ``grad``.  Runs where :func:`relu_backward`
        runs (CPU, GPU, Dask arrays).

    Raises
    ------
    ValueError
        If ``at_zero`` is not 0 (the message says why), and as
        :func:`relu_backward`.
    TypeError
        As :func:`relu_backward`.

    See Also
    --------
    relu_with_mask, relu_backward_from_mask : keep 2 bits per element, for
        any ``at_zero``, and ``x`` itself free to be overwritten.

    Examples
    --------
    >>> import numpy as np, fastrelu
    >>> x = np.array([-1.0, 0.0, 1.0, 2.0])
    >>> y = fastrelu.relu(x, out=x)  # x itself now holds y
    >>> fastrelu.relu_backward_from_output(y, np.ones(4))
    array([0., 0., 1., 1.])
    """
    if type(at_zero) is not float or at_zero != 0.0:
        if real_param("at_zero", at_zero, 0.0, 1.0) != 0.0:
            raise ValueError(f"{_FROM_OUTPUT_AT_ZERO}; got at_zero={at_zero!r}")
    return relu_backward(y, grad, out, device=device, stream=stream)


relu_backward_from_output.__doc__ = (relu_backward_from_output.__doc__ or "").replace(
    "{device_parameters}", _DEVICE_PARAMETERS
)


def relu_with_mask(
    x: ArrayLike,
    out: Any = None,
    *,
    mask_out: Any = None,
    device: str | None = None,
    stream: Any = None,
) -> tuple[Any, ReluMask]:
    """ReLU and the mask its backward pass needs, in one pass over ``x``.

    The mask holds the sign class of every element of ``x`` in 2 bits (see
    :class:`ReluMask` for the layout), 16 times less than float32 ``x`` and
    32 times less than float64: with it, :func:`relu_backward_from_mask`
    gives ``relu_backward(x, grad, at_zero=...)`` for any ``at_zero``, so
    ``x`` need not be kept, and ``out=x`` overwrites it with ``y``.

    Parameters
    ----------
    x : array_like
        Input of a floating (float16, float32, float64) or integer dtype,
        any shape and memory layout.
    out : ndarray, optional
        Array of ``x``'s shape and dtype that receives ``y``; it may be ``x``
        itself.
    mask_out : ReluMask or ndarray of uint8, optional
        Where to write the mask's bits, to reuse a buffer: a
        :class:`ReluMask` (its ``bits``) or a C-contiguous, writeable uint8
        array of the packed shape, ``x.shape[:-1] + (ceil(x.shape[-1] /
        4),)``, on the device of ``x``.  The returned mask holds that very
        array.
    {device_parameters}

    Returns
    -------
    y : ndarray or scalar
        ``relu(x)``, bit for bit (``out`` when it is given).
    mask : ReluMask
        The packed sign classes of ``x``, with ``x``'s shape and dtype;
        its ``bits`` are on the device of ``x`` (a NumPy, GPU or Dask array).

    Raises
    ------
    TypeError
        For unsupported dtypes, an ``out`` of the wrong dtype, a
        ``mask_out`` that is not a ReluMask or uint8 array, ``out=`` or
        ``mask_out=`` with Dask arrays, or host and GPU arrays in one call.
    ValueError
        For an ``out`` or ``mask_out`` of the wrong shape, a read-only one,
        a ``mask_out`` that is not C-contiguous or shares memory with ``x``
        or ``out``.  Nothing is written when an argument is refused.

    Notes
    -----
    A Dask array's mask has Dask bits chunked as ``x``, whose chunks along
    the last axis are made multiples of 4 elements (but the last) first,
    so that no byte spans two chunks.

    Examples
    --------
    >>> import numpy as np, fastrelu
    >>> x = np.array([[-2.0, 0.0, 3.0], [1.0, np.nan, -0.0]])
    >>> y, mask = fastrelu.relu_with_mask(x)
    >>> y
    array([[ 0.,  0.,  3.],
           [ 1., nan,  0.]])
    >>> mask.bits.shape
    (2, 1)
    >>> fastrelu.relu_backward_from_mask(mask, np.full(x.shape, 10.0), at_zero=0.5)
    array([[ 0.,  5., 10.],
           [10., nan,  5.]])
    """
    return _mask.relu_with_mask(x, out, mask_out=mask_out, device=device, stream=stream)


def relu_backward_from_mask(
    mask: ReluMask,
    grad: ArrayLike,
    out: Any = None,
    *,
    at_zero: float = 0.0,
    device: str | None = None,
    stream: Any = None,
) -> Any:
    """Gradient of ReLU from the mask of :func:`relu_with_mask`.

    The same result as ``relu_backward(x, grad, at_zero=at_zero)``, bit for
    bit (dtype, signs of zero, infinities), where ``mask`` is the mask of
    ``x``; it reads 2 bits per element instead of ``x``.  Where ``x`` was
    NaN the result is the default quiet NaN (``relu_backward`` gives the
    NaN of ``x`` itself, with its sign and payload).

    Parameters
    ----------
    mask : ReluMask
        The mask of ``x``.
    grad : array_like
        The upstream gradient ``dL/dy``; broadcasts to ``mask.shape``.
    out : ndarray, optional
        Array of ``mask.shape`` and the result's dtype that receives the
        result; it may be ``grad`` itself.
    at_zero : float, default 0.0
        The subgradient where ``x == 0``, a number in ``[0, 1]`` (0 or 1
        for an integer result), as in :func:`relu_backward`.
    {device_parameters}

    Returns
    -------
    ndarray or scalar
        ``grad`` where ``x > 0``; ``at_zero * grad`` where ``x == 0``;
        exactly 0 where ``x < 0`` (also with ``at_zero=0`` at ``x == 0``),
        whatever ``grad`` holds; NaN where ``x`` is NaN.  The dtype is
        NumPy's promotion of ``mask.dtype`` and ``grad``'s.

    Raises
    ------
    TypeError
        If ``mask`` is not a :class:`ReluMask`, for unsupported dtypes, an
        ``out`` of the wrong dtype, or host and GPU arrays in one call.
    ValueError
        If ``grad`` does not broadcast to ``mask.shape`` or ``out`` has
        another shape (the message names both shapes), for a read-only
        ``out``, or a bad ``at_zero``.  Nothing is written when an argument
        is refused.

    Examples
    --------
    >>> import numpy as np, fastrelu
    >>> y, mask = fastrelu.relu_with_mask(np.array([-1.0, 0.0, 2.0]))
    >>> fastrelu.relu_backward_from_mask(mask, np.array([3.0, 3.0, 3.0]), at_zero=1.0)
    array([0., 3., 3.])
    """
    return _mask.relu_backward_from_mask(mask, grad, out, at_zero=at_zero, device=device, stream=stream)


for _func in (relu_with_mask, relu_backward_from_mask):
    _func.__doc__ = (_func.__doc__ or "").replace("{device_parameters}", _DEVICE_PARAMETERS)
