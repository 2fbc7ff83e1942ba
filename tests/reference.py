"""Slow, obviously-correct references, sharing no code with the kernels.

Softplus and sigmoid are evaluated in ``np.longdouble`` (64-bit mantissa on
x86) or with mpmath, and errors are measured in units in the last place (ULP)
of the target dtype.
"""

import mpmath
import numpy as np

LD = np.longdouble
HAVE_EXTENDED = np.finfo(LD).nmant >= 63


def softplus_ld(x, beta=1.0):
    t = LD(beta) * np.asarray(x, LD)
    return np.logaddexp(LD(0), t) / LD(beta)


def sigmoid_ld(x, beta=1.0):
    t = LD(beta) * np.asarray(x, LD)
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1 / (1 + e), e / (1 + e))


def _to_longdouble(values):
    """mpmath numbers to long double; those beyond its range become 0 or inf."""
    out = []
    for v in values:
        if not mpmath.isfinite(v) or abs(v) > mpmath.mpf("1e4900"):
            out.append(LD(float(v)))
        elif abs(v) < mpmath.mpf("1e-4900"):
            out.append(LD(0))
        else:
            out.append(LD(mpmath.nstr(v, 40, strip_zeros=False)))
    return np.array(out, LD)


def softplus_mp(x, beta=1.0, prec=160):
    """softplus in mpmath for float64 inputs, returned as long double."""
    with mpmath.workprec(prec):
        b = mpmath.mpf(float(beta))
        return _to_longdouble([mpmath.log1p(mpmath.exp(b * mpmath.mpf(float(v)))) / b for v in np.ravel(x)])


def sigmoid_mp(x, beta=1.0, prec=160):
    with mpmath.workprec(prec):
        b = mpmath.mpf(float(beta))
        return _to_longdouble([1 / (1 + mpmath.exp(-b * mpmath.mpf(float(v)))) for v in np.ravel(x)])


def ulp_error(y, ref, dtype):
    """|y - ref| in ULP of *dtype* at ref's magnitude (subnormal spacing below)."""
    fi = np.finfo(dtype)
    ref = np.asarray(ref, LD)
    a = np.abs(ref)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.maximum(a, LD(fi.smallest_normal))))
    ulp = np.exp2(e - fi.nmant)
    return np.abs(np.asarray(y, LD) - ref) / ulp
