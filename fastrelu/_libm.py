"""``exp`` and ``log1p`` that LLVM can vectorise.

The PyPI builds of llvmlite carry no vector math library, so ``math.exp``
inside a Numba loop is a call into the C library, one element at a time.
The functions here are plain arithmetic instead: a range reduction, a
polynomial and exponent handling through integer bit manipulation, with
every branch simple enough for the loop vectoriser to turn into a blend.
Both work in the precision of their argument (float32 or float64) and stay
within about one ULP of the exact result over the whole float range.

Like :mod:`fastrelu._formulas`, every function also runs as plain Python on
NumPy scalars; only the bit casts and ``mul_add`` have separate compiled
implementations (Numba intrinsics).
The polynomial coefficients are near-minimax fits (``mpmath.chebyfit``) of
the functions named beside them, rounded to the working precision.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload, register_jitable

_INT_OF = {types.float32: types.int32, types.float64: types.int64}
_FLOAT_OF = {v: k for k, v in _INT_OF.items()}
_FLOAT_TYPES = frozenset(_INT_OF)
_NP_INT_OF = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}
_NP_FLOAT_OF = {np.dtype(np.int32): np.float32, np.dtype(np.int64): np.float64}


def float_bits(x):
    """The IEEE-754 bits of a float32 (float64) scalar as an int32 (int64)."""
    x = np.asarray(x)
    return x.view(_NP_INT_OF[x.dtype])[()]


def bits_float(n):
    """The float32 (float64) whose IEEE-754 bits are the int32 (int64) *n*."""
    n = np.asarray(n)
    return n.view(_NP_FLOAT_OF[n.dtype])[()]


def _bitcast_intrinsic(type_map):
    @intrinsic
    def bitcast(typingctx, value):
        if value not in type_map:
            return None
        sig = type_map[value](value)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(signature.return_type))

        return sig, codegen

    return bitcast


_to_int = _bitcast_intrinsic(_INT_OF)
_to_float = _bitcast_intrinsic(_FLOAT_OF)


def mul_add(a, b, c):
    """a * b + c, fused into one rounding where the hardware has FMA.

    LLVM's ``fmuladd`` leaves the choice to the target, so the result is
    either the fused or the separately rounded value; the polynomials below
    are accurate with both.  Plain Python takes the unfused one.
    """
    return a * b + c


@intrinsic
def _fmuladd(typingctx, a, b, c):
    if not (a in _FLOAT_TYPES and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        flt = context.get_value_type(signature.return_type)
        fnty = ir.FunctionType(flt, [flt] * 3)
        return builder.call(builder.module.declare_intrinsic("llvm.fmuladd", [flt], fnty), args)

    return a(a, b, c), codegen


@overload(mul_add)
def _mul_add_jit(a, b, c):
    if a in _FLOAT_TYPES and a == b == c:
        return lambda a, b, c: _fmuladd(a, b, c)


@overload(float_bits)
def _float_bits_jit(x):
    if x in _FLOAT_TYPES:
        return lambda x: _to_int(x)


@overload(bits_float)
def _bits_float_jit(n):
    if n in _FLOAT_OF:
        return lambda n: _to_float(n)


# Polynomial coefficients, highest degree first: near-minimax fits
# (mpmath.chebyfit) rounded to the working precision.
# q(r) = (exp(r) - 1 - r) / r**2 on |r| <= 0.35, float32
_EXP_Q32 = (
    0.00019891989359166473,
    0.001393454847857356,
    0.008333309553563595,
    0.04166645556688309,
    0.1666666716337204,
    0.5,
)
# the same, float64
_EXP_Q64 = (
    2.510135443993923e-08,
    2.762134843705726e-07,
    2.7557266402504823e-06,
    2.480151862045023e-05,
    0.00019841269864391087,
    0.0013888888918952918,
    0.008333333333329791,
    0.04166666666662061,
    0.16666666666666669,
    0.5000000000000001,
)
# Q(f) = (log1p(f) - f) / f**2 on [sqrt(1/2) - 1, sqrt(2) - 1], float32
_LOG1P_Q32 = (
    0.06767020374536514,
    -0.11556577682495117,
    0.11812568455934525,
    -0.12420950084924698,
    0.1423228532075882,
    -0.16667528450489044,
    0.20001447200775146,
    -0.25000011920928955,
    0.33333322405815125,
    -0.5,
)
# R(x) = (log1p(x) - x) / x**2 on [0, 1], float32
_LOG1P_UNIT_R32 = (
    -0.004466211423277855,
    0.025224054232239723,
    -0.06675772368907928,
    0.11561845242977142,
    -0.15847565233707428,
    0.198541060090065,
    -0.24986526370048523,
    0.3333284258842468,
    -0.4999999701976776,
)
# P(z) = R(s) / s**2 with z = s**2, |s| <= 0.1716, float64
_LOG_P64 = (
    0.14630465387106195,
    0.1533058183634364,
    0.18182923591453207,
    0.22222210659293473,
    0.2857142862890348,
    0.39999999999893016,
    0.666666666666667,
)


@register_jitable
def _horner(x, coefficients):
    """The polynomial with *coefficients* (highest degree first) at *x*."""
    T = type(x)
    p = T(coefficients[0])
    for c in coefficients[1:]:
        p = mul_add(p, x, T(c))
    return p


@register_jitable
def is_single(x):
    """True when *x* is a float32: 2**24 + 1 rounds to 2**24 only there.

    A constant for the compiler, so the branch it guards costs nothing.
    """
    T = type(x)
    return T(16777217.0) == T(16777216.0)


@register_jitable
def _pow2(n, x):
    """2.0**n in the precision of *x*, for n within the normal exponents."""
    one = float_bits(type(x)(1))
    Int = type(one)
    if is_single(x):
        return bits_float(Int((n << Int(23)) + one))
    return bits_float(Int((n << Int(52)) + one))


@register_jitable(forceinline=True)
def exp(x):
    """e**x, to within about one ULP, overflowing to inf and underflowing
    through the subnormals to 0 as the exact result rounds."""
    return _exp(x, type(x)(0), True, False)


@register_jitable(forceinline=True)
def exp_nonpositive(x):
    """e**x for x <= 0 (or NaN), as :func:`exp` without its overflow check."""
    return _exp(x, type(x)(0), False, False)


@register_jitable(forceinline=True)
def exp_nonpositive_sum(x, dx):
    """e**(x + dx) for x <= 0 (or NaN) and a small *dx* (at most an ULP of
    *x*): the exact exponent of a rounded product, rounded once, where
    ``exp(x) * (1 + dx)`` would be rounded twice more."""
    return _exp(x, dx, False, True)


@register_jitable(forceinline=True)
def _exp(x, dx, may_overflow, with_dx):
    T = type(x)
    one = T(1)
    if is_single(x):
        lo, hi = T(-104.0), T(89.0)  # exp(lo) < 2**-150, exp(hi) > max
        shifter = T(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer
        ln2_hi, ln2_lo = T(0.693145751953125), T(1.428606765330187e-06)
    else:
        lo, hi = T(-746.0), T(710.0)
        shifter = T(6755399441055744.0)  # 1.5 * 2**52
        ln2_hi, ln2_lo = T(0.6931471803691238), T(1.9082149292705877e-10)
    # Clamping keeps n in range; exp(lo) still rounds to 0 and exp(hi) to
    # inf.  NaN fails both tests and comes out as NaN.
    if with_dx:
        # dx may be as large as an ULP of an x far below lo.
        dx = dx if x >= lo else T(0)
    if x < lo:
        x = lo
    if may_overflow and x > hi:
        x = hi
    # x = n*ln2 + r with n an integer and |r| <= ln2/2 (a little more after
    # rounding).  ln2_hi has enough trailing zero bits for n*ln2_hi to be
    # exact, so r is accurate to the last bit of x.
    k = mul_add(x, T(1.4426950408889634), shifter)
    nf = k - shifter
    Int = type(float_bits(k))
    # Numba widens sums of int32 to int64; Int(...) keeps float32's lanes narrow.
    n = Int(float_bits(k) - float_bits(shifter))
    r = mul_add(-nf, ln2_hi, x)  # exact
    if with_dx:  # a constant for the compiler
        # dx joins the small term, so that r is still rounded once.
        r = r + mul_add(-nf, ln2_lo, dx)
    else:
        r = mul_add(-nf, ln2_lo, r)
    # exp(r) = 1 + r + r**2 * q(r), q(r) = (exp(r) - 1 - r) / r**2.
    if is_single(x):
        q = _horner(r, _EXP_Q32)
    else:
        q = _horner(r, _EXP_Q64)
    p = one + mul_add(r * r, q, r)
    # 2**n in two normal factors, so that results near overflow and in the
    # subnormal range are rounded once, by the last multiplication.
    n1 = Int(n >> Int(1))
    return p * _pow2(n1, x) * _pow2(Int(n - n1), x)


@register_jitable(forceinline=True)
def log1p_unit(x):
    """log(1 + x) for x in [0, 1] (NaN gives NaN), the range of softplus.

    In float32, ``x + x**2 * R(x)`` with a polynomial for ``R(x) =
    (log1p(x) - x) / x**2``, whose nearest singularity (x = -1) is far
    enough from [0, 1] for degree 8 to reach float32's precision: no range
    reduction and no rounding error of ``1 + x`` to carry, a third of the
    work of :func:`log1p_finite`.  In float64, where that would take twice
    the degree, :func:`log1p_finite` with the exponent of ``1 + x`` known to
    be 0 or 1.
    """
    T = type(x)
    one = T(1)
    if is_single(x):
        return mul_add(x * _horner(x, _LOG1P_UNIT_R32), x, x)
    u = one + x
    c = x - (u - one)  # the rounding error of u = fl(1 + x), exact (Sterbenz)
    # u = 2**k * m with m in [sqrt(1/2), sqrt(2)): k is 1 from sqrt(2) on.
    big = u >= T(1.4142135623730951)
    half = T(0.5) if big else one  # 2**-k
    k = one if big else T(0)
    f = u * half - one
    ln2_hi, ln2_lo = T(0.6931471803691238), T(1.9082149292705877e-10)
    s = f / (T(2) + f)
    z = s * s
    P = _horner(z, _LOG_P64)
    hfsq = T(0.5) * f * f
    return k * ln2_hi + (f - (hfsq - mul_add(s, hfsq + z * P, mul_add(k, ln2_lo, c / u))))


@register_jitable(forceinline=True)
def log1p_finite(x):
    """log(1 + x) for finite x > -1 (NaN gives NaN), without the checks for
    the other values: for callers that know their argument's range."""
    T = type(x)
    one = T(1)
    u = one + x
    # c is the rounding error of u = fl(1 + x), exact in both cases (Sterbenz);
    # log1p(x) = log(u) + c/u to first order.
    c = x - (u - one) if u < T(2) else one - (u - x)
    # u = 2**k * m with m in [sqrt(1/2), sqrt(2)): shift the bits so that m's
    # range starts at an exponent boundary, read k, then put m back.
    iu = float_bits(u)
    Int = type(iu)
    if is_single(x):
        sqrt_half, shift, mantissa = Int(0x3F3504F3), Int(23), Int(0x007FFFFF)
        ln2_hi, ln2_lo = T(0.693145751953125), T(1.428606765330187e-06)
    else:
        sqrt_half, shift, mantissa = Int(0x3FE6A09E667F3BCD), Int(52), Int(0x000FFFFFFFFFFFFF)
        ln2_hi, ln2_lo = T(0.6931471803691238), T(1.9082149292705877e-10)
    iu = Int(iu + Int(float_bits(one) - sqrt_half))
    ki = Int((iu >> shift) - (float_bits(one) >> shift))
    k = T(ki)
    f = bits_float(Int((iu & mantissa) + sqrt_half)) - one
    if is_single(x):
        # Divisions are slow in vector code, so float32 does without:
        # log(1 + f) = f + f**2 * Q(f) with Q(f) = (log1p(f) - f) / f**2, and
        # c/u = c * 2**-k / (1 + f) with 1/(1 + f) from its series, ample for
        # a correction that is itself below one ULP of the result.
        Q = _horner(f, _LOG1P_Q32)
        inv_m = mul_add(mul_add(f - one, f, one), -f, one)
        # 2**-k for k up to 126; beyond that c/u is far below the result's ULP.
        c_over_u = c * inv_m * _pow2(-ki if ki < Int(126) else Int(-126), x)
        return mul_add(k, ln2_hi, f + mul_add(f * f, Q, mul_add(k, ln2_lo, c_over_u)))
    # log(1 + f) = 2*atanh(s) with s = f / (2 + f), written as
    # f - hfsq + s*(hfsq + R), R = z * P(z), z = s**2.
    s = f / (T(2) + f)
    z = s * s
    P = _horner(z, _LOG_P64)
    hfsq = T(0.5) * f * f
    return k * ln2_hi + (f - (hfsq - mul_add(s, hfsq + z * P, mul_add(k, ln2_lo, c / u))))
