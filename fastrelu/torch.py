"""fastrelu's kernels as PyTorch operators that autograd differentiates.

ReLU's derivative at 0 is whatever ``at_zero`` says (PyTorch fixes it at 0),
and softplus is fastrelu's accurate one, with PyTorch's ``beta`` and
``threshold`` on request.  The forward and backward passes run fastrelu's
kernels on CPU and CUDA tensors.  They are registered operators
(``torch.ops.fastrelu.*``, made with ``torch.library.custom_op``, with
autograd formulas and shape functions), so ``torch.compile(fullgraph=True)``
traces models that use them without graph breaks.

Importing this module imports PyTorch; ``import fastrelu`` does not.
"""

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastrelu.torch needs PyTorch, which is not installed: pip install torch, "
        "or fastrelu with its torch extra"
    ) from exc

import contextlib
import math

from . import _threads, activations
from ._elementwise import real_param

__all__ = ["relu", "softplus", "ReLU", "Softplus"]

_FLOATS = (torch.float16, torch.float32, torch.float64)


def _view(tensor):
    """What fastrelu computes on: a CPU tensor's NumPy view, a CUDA tensor itself."""
    return tensor.detach() if tensor.is_cuda else tensor.detach().numpy()


def _threads_for(tensor):
    # Inside a model on the CPU, PyTorch's own threads run the layers around
    # the activations, and fastrelu's workers, which spin between calls,
    # would take cores from them (a training step measured 0.7 times as fast
    # with them as without): the kernels run on the calling thread only.
    return contextlib.nullcontext() if tensor.is_cuda else _threads.limit(1)


def _new(tensor):
    return torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device)


def _check_floating(name, tensor):
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in _FLOATS:
        raise TypeError(
            f"{name} has dtype {tensor.dtype}; fastrelu.torch takes float16, float32 and float64 tensors"
        )


def _check_pair(x, grad):
    if grad.dtype != x.dtype or grad.shape != x.shape or grad.device != x.device:
        raise ValueError(
            f"grad must be a tensor like x: got {grad.dtype} {tuple(grad.shape)} on {grad.device} "
            f"for x {x.dtype} {tuple(x.shape)} on {x.device}"
        )


def _relu(x: torch.Tensor, at_zero: float) -> torch.Tensor:
    out = _new(x)
    with _threads_for(x):
        activations.relu(_view(x), out=_view(out))
    return out


def _relu_backward(x: torch.Tensor, grad: torch.Tensor, at_zero: float) -> torch.Tensor:
    _check_pair(x, grad)
    out = _new(x)
    with _threads_for(x):
        activations.relu_backward(_view(x), _view(grad), out=_view(out), at_zero=at_zero)
    return out


def _softplus(x: torch.Tensor, beta: float, threshold: float | None) -> torch.Tensor:
    out = _new(x)
    with _threads_for(x):
        activations.softplus(_view(x), out=_view(out), beta=beta, threshold=threshold)
    return out


def _softplus_backward(
    x: torch.Tensor, grad: torch.Tensor, beta: float, threshold: float | None
) -> torch.Tensor:
    _check_pair(x, grad)
    out = _new(x)
    with _threads_for(x):
        activations.softplus_backward(_view(x), _view(grad), out=_view(out), beta=beta, threshold=threshold)
    return out


def _like_x(x, *args):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _keep_input(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.params = inputs[1:]


# The registered operators, torch.ops.fastrelu.*: what torch.compile traces.
_OPERATORS = {}
for _forward, _backward in ((_relu, _relu_backward), (_softplus, _softplus_backward)):
    _op = torch.library.custom_op(f"fastrelu::{_forward.__name__[1:]}", _forward, mutates_args=())
    _op_backward = torch.library.custom_op(f"fastrelu::{_backward.__name__[1:]}", _backward, mutates_args=())
    _op.register_fake(_like_x)
    _op_backward.register_fake(_like_x)

    def _gradient(ctx, grad, op_backward=_op_backward):
        (x,) = ctx.saved_tensors
        return op_backward(x, grad, *ctx.params), *(None for _ in ctx.params)

    _op.register_autograd(_gradient, setup_context=_keep_input)
    _OPERATORS[_forward] = _op


class _Activation(torch.autograd.Function):
    """The same forward and backward passes, for calls outside torch.compile:
    an autograd Function costs a fraction of a registered operator's dispatch."""

    @staticmethod
    def forward(ctx, forward, backward, x, *params):
        ctx.save_for_backward(x)
        ctx.backward, ctx.params = backward, params
        return forward(x, *params)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return None, None, ctx.backward(x, grad, *ctx.params), *(None for _ in ctx.params)


def _apply(forward, backward, x, *params):
    if torch.compiler.is_compiling():
        return _OPERATORS[forward](x, *params)
    if x.requires_grad and torch.is_grad_enabled():
        return _Activation.apply(forward, backward, x, *params)
    return forward(x, *params)


def relu(x: torch.Tensor, at_zero: float = 0.0) -> torch.Tensor:
    """ReLU, ``max(x, 0)``, whose gradient at ``x == 0`` is ``at_zero``.

    Parameters
    ----------
    x : torch.Tensor
        A float16, float32 or float64 tensor on the CPU or a CUDA GPU, of any
        shape and strides.
    at_zero : float, default 0.0
        The subgradient at 0, a number in ``[0, 1]``: the backward pass gives
        ``at_zero * grad`` where ``x == 0`` (PyTorch's ``torch.relu`` gives 0).

    Returns
    -------
    torch.Tensor
        A new tensor, ``x`` where ``x > 0`` and ``+0`` elsewhere, NaN kept.
        Its gradient is ``grad`` where ``x > 0``, ``at_zero * grad`` where
        ``x == 0``, exactly 0 where ``x < 0`` (whatever ``grad`` holds) and
        NaN where ``x`` is NaN.

    Raises
    ------
    TypeError
        If ``x`` is not a tensor of one of those dtypes (bfloat16 is not
        supported).
    ValueError
        If ``at_zero`` is not a number in ``[0, 1]``.

    Examples
    --------
    >>> import torch, fastrelu.torch
    >>> x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    >>> fastrelu.torch.relu(x, at_zero=1.0).sum().backward()
    >>> x.grad
    tensor([0., 1., 1.])
    """
    _check_floating("x", x)
    return _apply(_relu, _relu_backward, x, real_param("at_zero", at_zero, 0.0, 1.0))


def softplus(x: torch.Tensor, beta: float = 1.0, threshold: float | None = None) -> torch.Tensor:
    """Softplus, ``log(1 + exp(beta x)) / beta``, accurate over the whole range.

    Parameters
    ----------
    x : torch.Tensor
        A float16, float32 or float64 tensor on the CPU or a CUDA GPU.
    beta : float, default 1.0
        Sharpness, finite and > 0.
    threshold : float, optional
        As in ``torch.nn.functional.softplus`` (whose default is 20): ``x``
        itself, and gradient ``grad``, where ``beta * x > threshold``.  The
        default ``None`` evaluates the exact function everywhere.

    Returns
    -------
    torch.Tensor
        A new tensor; its gradient is ``grad * sigmoid(beta x)``.

    Raises
    ------
    TypeError
        If ``x`` is not a tensor of one of those dtypes.
    ValueError
        If ``beta`` is not finite and > 0, or ``threshold`` is not a number.

    Examples
    --------
    >>> import torch, fastrelu.torch
    >>> x = torch.tensor([-1.0, 0.0, 30.0], dtype=torch.float64, requires_grad=True)
    >>> y = fastrelu.torch.softplus(x)
    >>> y.sum().backward()
    >>> x.grad
    tensor([0.2689, 0.5000, 1.0000], dtype=torch.float64)
    """
    _check_floating("x", x)
    beta = real_param("beta", beta, 0.0, math.inf, lo_open=True, hi_open=True)
    threshold = None if threshold is None else real_param("threshold", threshold)
    return _apply(_softplus, _softplus_backward, x, beta, threshold)


class ReLU(torch.nn.Module):
    """``torch.nn.ReLU`` with a chosen subgradient at 0: :func:`relu` as a module.

    Parameters
    ----------
    at_zero : float, default 0.0
        The gradient's value at ``x == 0``, a number in ``[0, 1]``.
    """

    def __init__(self, at_zero: float = 0.0):
        super().__init__()
        self.at_zero = real_param("at_zero", at_zero, 0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu(x, self.at_zero)

    def extra_repr(self) -> str:
        return f"at_zero={self.at_zero}"


class Softplus(torch.nn.Module):
    """fastrelu's accurate softplus as a module: :func:`softplus`.

    Parameters
    ----------
    beta : float, default 1.0
        Sharpness, finite and > 0.
    threshold : float, optional
        PyTorch's cut-off (``torch.nn.Softplus`` uses 20); ``None``: none.
    """

    def __init__(self, beta: float = 1.0, threshold: float | None = None):
        super().__init__()
        self.beta = real_param("beta", beta, 0.0, math.inf, lo_open=True, hi_open=True)
        self.threshold = None if threshold is None else real_param("threshold", threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"
