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

from . import _device, _threads, activations
from ._elementwise import real_param
from ._mask import ReluMask, packed_shape

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


def _relu_with_mask(x: torch.Tensor, at_zero: float) -> tuple[torch.Tensor, torch.Tensor]:
    # at_zero is for the backward pass (the autograd formula reads it).
    out = _new(x)
    bits = torch.empty(packed_shape(x.shape), dtype=torch.uint8, device=x.device)
    with _threads_for(x):
        activations.relu_with_mask(_view(x), out=_view(out), mask_out=_view(bits))
    return out, bits


def _relu_backward_from_mask(bits: torch.Tensor, grad: torch.Tensor, at_zero: float) -> torch.Tensor:
    out = _new(grad)
    mask = ReluMask(_view(bits), tuple(grad.shape), _device._torch_dtype(grad.dtype))
    with _threads_for(grad):
        activations.relu_backward_from_mask(mask, _view(grad), out=_view(out), at_zero=at_zero)
    return out


def _relu_keeping_output(x: torch.Tensor) -> torch.Tensor:
    return _relu(x, 0.0)


_relu_mask_op = torch.library.custom_op("fastrelu::relu_with_mask", _relu_with_mask, mutates_args=())
_relu_from_mask_op = torch.library.custom_op(
    "fastrelu::relu_backward_from_mask", _relu_backward_from_mask, mutates_args=()
)
_relu_output_op = torch.library.custom_op(
    "fastrelu::relu_keeping_output", _relu_keeping_output, mutates_args=()
)


@_relu_mask_op.register_fake
def _(x, at_zero):
    return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty(
        packed_shape(x.shape), dtype=torch.uint8
    )


@_relu_from_mask_op.register_fake
def _(bits, grad, at_zero):
    return torch.empty_like(grad, memory_format=torch.contiguous_format)


_relu_output_op.register_fake(_like_x)


def _keep_mask(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.at_zero = inputs[1]


def _gradient_from_mask(ctx, grad, grad_bits):
    (bits,) = ctx.saved_tensors
    return _relu_from_mask_op(bits, grad, ctx.at_zero), None


def _keep_output(ctx, inputs, output):
    ctx.save_for_backward(output)


def _gradient_from_output(ctx, grad):
    (y,) = ctx.saved_tensors
    return torch.ops.fastrelu.relu_backward(y, grad, 0.0)


_relu_mask_op.register_autograd(_gradient_from_mask, setup_context=_keep_mask)
_relu_output_op.register_autograd(_gradient_from_output, setup_context=_keep_output)


class _ReluSaving(torch.autograd.Function):
    """Eager ReLU that keeps its output (``save="output"``) or its mask
    (``save="mask"``) for the backward pass, not its input."""

    @staticmethod
    def forward(ctx, x, at_zero, save):
        ctx.at_zero, ctx.save = at_zero, save
        if save == "output":
            y = _relu(x, 0.0)
            ctx.save_for_backward(y)
            return y
        y, bits = _relu_with_mask(x, at_zero)
        ctx.save_for_backward(bits)
        return y

    @staticmethod
    def backward(ctx, grad):
        (kept,) = ctx.saved_tensors
        if ctx.save == "output":
            return _relu_backward(kept, grad, 0.0), None, None
        return _relu_backward_from_mask(kept, grad, ctx.at_zero), None, None


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


_SAVES = ("input", "output", "mask")


def _check_save(save, at_zero):
    if save not in _SAVES:
        raise ValueError(f"save must be 'input', 'output' or 'mask', got {save!r}")
    if save == "output" and at_zero != 0:
        raise ValueError(
            f"save='output' needs at_zero=0, got {at_zero!r}: y = relu(x) is 0 both where x == 0 and where "
            "x < 0, so the subgradient at 0 cannot be applied from it; use save='mask' (2 bits per element)"
        )


def relu(x: torch.Tensor, at_zero: float = 0.0, save: str = "input") -> torch.Tensor:
    """ReLU, ``max(x, 0)``, whose gradient at ``x == 0`` is ``at_zero``.

    Parameters
    ----------
    x : torch.Tensor
        A float16, float32 or float64 tensor on the CPU or a CUDA GPU, of any
        shape and strides.
    at_zero : float, default 0.0
        The subgradient at 0, a number in ``[0, 1]``: the backward pass gives
        ``at_zero * grad`` where ``x == 0`` (PyTorch's ``torch.relu`` gives 0).
    save : {"input", "output", "mask"}, default "input"
        What the backward pass keeps: ``x`` itself; the output ``y`` (no
        more memory when the next layer keeps ``y`` anyway; needs
        ``at_zero=0``); or a mask of 2 bits per element
        (:func:`fastrelu.relu_with_mask`), 16 times less than float32 ``x``.
        The gradients are the same, bit for bit (where ``x`` is NaN, the
        default quiet NaN with ``save="mask"``).

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
        If ``at_zero`` is not a number in ``[0, 1]``, ``save`` is not one of
        its values, or ``save="output"`` with ``at_zero != 0``.

    Examples
    --------
    >>> import torch, fastrelu.torch
    >>> x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    >>> fastrelu.torch.relu(x, at_zero=1.0).sum().backward()
    >>> x.grad
    tensor([0., 1., 1.])
    >>> x.grad = None
    >>> fastrelu.torch.relu(x, at_zero=1.0, save="mask").sum().backward()
    >>> x.grad
    tensor([0., 1., 1.])
    """
    at_zero = real_param("at_zero", at_zero, 0.0, 1.0)
    _check_save(save, at_zero)
    return _relu_saving(x, at_zero, save)


def _relu_saving(x, at_zero, save):
    """:func:`relu` with its arguments checked, but for ``x``."""
    _check_floating("x", x)
    if save == "input" or not (x.requires_grad and torch.is_grad_enabled()):
        return _apply(_relu, _relu_backward, x, at_zero)
    if torch.compiler.is_compiling():
        if save == "output":
            return _relu_output_op(x)
        return _relu_mask_op(x, at_zero)[0]
    return _ReluSaving.apply(x, at_zero, save)


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
    save : {"input", "output", "mask"}, default "input"
        What the backward pass keeps (see :func:`relu`): ``"mask"`` keeps 2
        bits per element, 16 times less than float32 ``x``; ``"output"``
        keeps ``y`` (needs ``at_zero=0``).

    Raises
    ------
    ValueError
        For an ``at_zero`` outside ``[0, 1]``, an unknown ``save``, or
        ``save="output"`` with ``at_zero != 0``.
    """

    def __init__(self, at_zero: float = 0.0, save: str = "input"):
        super().__init__()
        self.at_zero = real_param("at_zero", at_zero, 0.0, 1.0)
        _check_save(save, self.at_zero)
        self.save = save

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _relu_saving(x, self.at_zero, self.save)

    def extra_repr(self) -> str:
        return f"at_zero={self.at_zero}" + ("" if self.save == "input" else f", save={self.save!r}")


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
