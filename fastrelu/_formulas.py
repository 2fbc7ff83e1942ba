"""Scalar formulas: the single definition of every activation and gradient.

Each function here takes and returns scalars and is written so that Numba can
compile it for any target (CPU loops in :mod:`fastrelu._kernels`, CUDA kernels)
and so that it also runs as plain Python.  Constants are built with
``type(x)(...)`` so that float32 arithmetic stays in float32.
"""

import math

from numba.extending import register_jitable

from ._libm import exp_nonpositive, exp_nonpositive_sum, is_single, log1p_unit


@register_jitable
def relu(x):
    """max(x, 0) with NaN kept and -0.0 mapped to +0.0."""
    zero = type(x)(0)
    # ``x <= 0`` is False for NaN, so NaN falls through to ``x``.
    return zero if x <= zero else x


@register_jitable
def relu_grad(x, grad, at_zero):
    """Masked upstream gradient of ReLU; ``at_zero`` is the subgradient at 0."""
    zero = type(grad)(0)
    if x > 0:
        return grad
    if x < 0:
        return zero
    if x == 0:
        # A mask, not a product: with at_zero == 0 an inf or NaN grad gives 0.
        return zero if at_zero == 0 else at_zero * grad
    return type(grad)(x)  # x is NaN


# The sign classes of a mask (fastrelu.ReluMask): 2-bit codes.
NEGATIVE, POSITIVE, ZERO, NAN = 0, 1, 2, 3


@register_jitable(forceinline=True)
def relu_code(x):
    """The sign class of x as a mask's 2-bit code: 0 where x < 0, 1 where
    x > 0, 2 where x == 0 (either sign), 3 where x is NaN."""
    zero = type(x)(0)
    # Selects, not branches: the loops around it vectorise.
    code = 1 if x > zero else 0
    code = 2 if x == zero else code
    return 3 if x != x else code


@register_jitable(forceinline=True)
def relu_grad_code(code, grad, at_zero):
    """:func:`relu_grad` from the sign class of x (its code, see
    :func:`relu_code`): the same result for every x of that class, and the
    default quiet NaN for a NaN x (whose own sign and payload the code does
    not hold)."""
    zero = type(grad)(0)
    # Selects, not branches, as relu_grad's cases: grad for x > 0, exactly
    # 0 for x < 0, the subgradient for x == 0, NaN for NaN.
    at_zero_value = zero if at_zero == 0 else at_zero * grad
    result = grad if code == 1 else zero
    result = at_zero_value if code == 2 else result
    return type(grad)(math.nan) if code == 3 else result


@register_jitable
def identity(x):
    """x itself: the kernel of a copy, the ceiling ``fastrelu bench`` measures."""
    return x


@register_jitable
def _split_factor(x):
    # Veltkamp's constant 2**ceil(p/2) + 1 for x's precision p.
    T = type(x)
    if is_single(x):
        return T(4097.0)
    return T(134217729.0)


@register_jitable
def scaled(x, beta_hi, beta_lo):
    """Return ``(t, c)`` with ``t = fl(beta_hi * x)`` and ``t + c`` the product
    ``(beta_hi + beta_lo) * x`` to about twice the working precision.

    ``t`` is what PyTorch compares with its threshold; ``c`` lets the
    exponential regime of softplus and sigmoid stay accurate when beta != 1.
    ``c`` is zero wherever it cannot be formed (overflow, infinities, NaN).
    """
    if beta_hi == 1 and beta_lo == 0:
        return x, type(x)(0)
    t = beta_hi * x
    # Dekker's exact product: split both factors into halves of p/2 bits.
    f = _split_factor(x)
    xs = f * x
    xh = xs - (xs - x)
    xl = x - xh
    bs = f * beta_hi
    bh = bs - (bs - beta_hi)
    bl = beta_hi - bh
    c = (((bh * xh - t) + bh * xl) + bl * xh) + bl * xl
    c += beta_lo * x
    if not abs(c) <= abs(t):
        c = type(x)(0)
    return t, c


@register_jitable(forceinline=True)
def softplus(x, beta_hi, beta_lo, threshold):
    """log(1 + exp(beta*x)) / beta without overflow; ``x`` where beta*x > threshold."""
    t, c = scaled(x, beta_hi, beta_lo)
    if t > threshold:
        return x
    # softplus(t) = max(t, 0) + log1p(exp(-|t|)); the exact exponent is
    # -|t| + ca, and log1p(e*(1 + ca)) ~ log1p(e) + ca*e to first order.
    e = exp_nonpositive(-abs(t))
    y = log1p_unit(e)
    if not (beta_hi == 1 and beta_lo == 0):  # a constant in the folded loop
        ca = -c if t > 0 else c
        y = (y + ca * e) / beta_hi
    return relu(x) + y


@register_jitable(forceinline=True)
def softplus_grad(x, grad, beta_hi, beta_lo, threshold):
    """grad * sigmoid(beta*x), stable for every x; ``grad`` where beta*x > threshold."""
    t, c = scaled(x, beta_hi, beta_lo)
    if t > threshold:
        return grad
    one = type(x)(1)
    # Where t < 0, sigmoid(t) ~ exp(t): the product's rounding error c is a
    # relative error c of the result, so it joins the exponent, which is
    # then rounded once.  Where t >= 0 its effect, c * (1 - sigmoid(t)), is
    # far below an ULP.
    e = exp_nonpositive_sum(-abs(t), c if t < 0 else type(x)(0))
    # 1 / (1 + exp(-t)) for t >= 0, exp(t) / (1 + exp(t)) for t < 0
    return grad * ((one if t >= 0 else e) / (one + e))
