"""fastrelu's own exp and log1p, in ULP against wider references, over the whole float range.

float32 is checked on a sweep of bit patterns here (denser in ``python -m
pytest -m slow``) and on every one of the 2**32 patterns in an exhaustive test
(``python -m pytest -m exhaustive``); float64 on random bit patterns and on
dense samples of the ranges that matter.
"""

import numba
import numpy as np
import pytest
from numba.extending import register_jitable
from reference import HAVE_EXTENDED, LD, ulp_error

from fastrelu import _libm

MAX_ULP = 1.5  # exp and log1p are designed for about one ULP
# log1p_unit, for softplus: in float32 a polynomial on all of [0, 1] (measured
# 1.55 ULP at most over every float32 there).
MAX_ULP_UNIT = 1.6

needs_extended = pytest.mark.skipif(not HAVE_EXTENDED, reason="long double is not extended precision here")


def _loop(func):
    """A compiled loop applying fastrelu's scalar *func* to an array."""

    @numba.njit(error_model="numpy")
    def loop(x, out):
        for i in range(x.size):
            out[i] = func(x[i])

    return loop


@register_jitable(forceinline=True)
def log1p(x):
    """log(1 + x) for every float: fastrelu's ``log1p_finite`` (softplus's
    log1p in float64, on [0, 1]) with the special values put around it, so
    that it can be swept over the whole float range against NumPy's."""
    T = type(x)
    one = T(1)
    y = _libm.log1p_finite(x)
    if x == -one:
        y = T(-np.inf)
    if x < -one:
        y = T(np.nan)
    if x == T(np.inf) or x == T(0):
        y = x  # inf, and zero with its sign
    return y


# The scalar functions, compiled in loops and as plain Python.
SCALARS = {
    "exp": _libm.exp,
    "log1p": log1p,
    "log1p_unit": _libm.log1p_unit,
    "exp_nonpositive": _libm.exp_nonpositive,
}
FUNCTIONS = {"exp": (_loop(_libm.exp), np.exp), "log1p": (_loop(log1p), np.log1p)}
RESTRICTED = {
    "log1p_unit": (_loop(_libm.log1p_unit), np.log1p),  # for x in [0, 1]
    "exp_nonpositive": (_loop(_libm.exp_nonpositive), np.exp),  # for x <= 0
}


def compute(name, x):
    out = np.empty_like(x)
    {**FUNCTIONS, **RESTRICTED}[name][0](x, out)
    return out


def ulp_error_float32(got, ref):
    """|got - ref| in float32 ULP at ref's magnitude, all in float64 (fast)."""
    _, e = np.frexp(np.maximum(np.abs(ref), np.finfo(np.float32).smallest_normal))
    return np.abs(got - ref) / np.ldexp(1.0, e - 24)


def worst_error(name, x):
    """Largest ULP error of fastrelu's *name* on *x*, after checking that the
    results the dtype cannot hold finitely (inf, NaN, 0 from underflow) are
    exactly the correctly rounded ones.

    The reference is NumPy's function in a wider type: float64 for float32
    (its own error, below 2**-52 relative, is far below a float32 ULP) and
    long double for float64.
    """
    got = compute(name, x)
    wide = np.float64 if x.dtype == np.float32 else LD
    with np.errstate(all="ignore"):
        ref = {**FUNCTIONS, **RESTRICTED}[name][1](x.astype(wide))
        rounded = ref.astype(x.dtype)
    finite = np.isfinite(rounded)
    same = (got == rounded) | (np.isnan(got) & np.isnan(rounded))
    assert same[~finite].all(), f"{name}({x[~finite & ~same][:5]}) = {got[~finite & ~same][:5]}"
    if not finite.any():
        return 0.0, None
    if x.dtype == np.float32:
        err = ulp_error_float32(got[finite].astype(np.float64), ref[finite])
    else:
        err = ulp_error(got[finite], ref[finite], x.dtype)
    i = int(np.argmax(err))
    return float(err[i]), x[finite][i]


def check_float32_patterns(name, step, chunk=1 << 24):
    """Every *step*-th float32 bit pattern, both signs, NaNs included."""
    worst = (0.0, None)
    for start in range(0, 1 << 32, chunk * step):
        bits = np.arange(start, min(start + chunk * step, 1 << 32), step, dtype=np.uint64)
        worst = max(worst, worst_error(name, bits.astype(np.uint32).view(np.float32)), key=lambda w: w[0])
    print(f"float32 {name}: max error {worst[0]:.3f} ULP at x={worst[1]!r}")
    assert worst[0] <= MAX_ULP, worst


# Every 305th pattern in the default run, every 61st (a superset) in -m slow.
@pytest.mark.parametrize("step", [305, pytest.param(61, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_float32_dense_sweep(name, step):
    check_float32_patterns(name, step=step)


@pytest.mark.exhaustive
@pytest.mark.parametrize("name", FUNCTIONS)
def test_float32_every_bit_pattern(name):
    check_float32_patterns(name, step=1)


def float64_samples(name, rng, n=1 << 20):
    random_bits = rng.integers(0, 1 << 64, n, dtype=np.uint64).view(np.float64)
    if name == "exp":  # all of the range where exp is neither 0 nor inf
        ranges = [rng.uniform(-746, 710, n), rng.uniform(-1, 1, n // 4)]
    else:  # near -1, near 0, and magnitudes over the whole range
        ranges = [
            rng.uniform(-1, 3, n),
            rng.uniform(-1e-6, 1e-6, n // 4),
            np.expm1(-np.exp2(rng.uniform(-60, 5, n // 4))),
            np.exp2(rng.uniform(-1074, 1024, n // 4)),
        ]
    return np.concatenate([random_bits, *ranges])


@needs_extended
@pytest.mark.parametrize("name", FUNCTIONS)
def test_float64(name):
    err, x = worst_error(name, float64_samples(name, np.random.default_rng(7)))
    print(f"float64 {name}: max error {err:.3f} ULP at x={x!r}")
    assert err <= MAX_ULP, (err, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_values(dtype):
    fi = np.finfo(dtype)
    T = dtype
    tiny = fi.smallest_subnormal
    cases = {
        "exp": [
            (0.0, 1.0),
            (-0.0, 1.0),
            (np.inf, np.inf),
            (-np.inf, 0.0),
            (fi.max, np.inf),
            (-fi.max, 0.0),
            (tiny, 1.0),
            (-tiny, 1.0),
            (np.log(LD(fi.max)) * 1.0001, np.inf),
            (np.log(LD(tiny)) * 1.01, 0.0),
        ],
        "log1p": [
            (0.0, 0.0),
            (-1.0, -np.inf),
            (np.nextafter(T(-1), T(-2)), np.nan),
            (-2.0, np.nan),
            (-np.inf, np.nan),
            (np.inf, np.inf),
            (fi.max, np.log(LD(fi.max))),
            (tiny, tiny),
            (-tiny, -tiny),
            (fi.smallest_normal, fi.smallest_normal),
        ],
    }
    for name, pairs in cases.items():
        x = np.array([p[0] for p in pairs], T)
        want = np.array([p[1] for p in pairs], LD).astype(T)
        got = compute(name, x)
        np.testing.assert_array_equal(got, want, err_msg=f"{name}({x})")
        assert compute(name, np.array([np.nan], T))[0] != compute(name, np.array([np.nan], T))[0]
    # The sign of zero survives log1p, as in C's log1p.
    assert np.signbit(compute("log1p", np.array([-0.0], T))[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_python_agrees_with_compiled(dtype):
    """The same functions run as plain Python (as in the CUDA simulator); the
    compiled code may fuse multiply-adds, so allow one ULP between them."""
    rng = np.random.default_rng(3)
    x = {
        "exp": rng.uniform(-80, 80, 300).astype(dtype),
        "log1p": np.concatenate([rng.uniform(-0.99, 2, 200), np.exp2(rng.uniform(-30, 100, 100))]).astype(
            dtype
        ),
        "log1p_unit": np.concatenate([rng.uniform(0, 1, 200), np.exp2(rng.uniform(-60, 0, 100))]).astype(
            dtype
        ),
        "exp_nonpositive": rng.uniform(-100, 0, 300).astype(dtype),
    }
    for name, values in x.items():
        compiled = compute(name, values)
        plain = np.array([SCALARS[name](v) for v in values])
        assert plain.dtype == dtype
        assert np.all(np.abs(plain - compiled) <= np.spacing(np.abs(compiled))), name


@pytest.mark.parametrize("dtype, itype", [(np.float32, np.int32), (np.float64, np.int64)])
def test_bit_casts(dtype, itype):
    values = np.array([0.0, -0.0, 1.5, -np.inf, np.finfo(dtype).smallest_subnormal], dtype)

    @numba.njit
    def roundtrip(x, bits, back):
        for i in range(x.size):
            bits[i] = _libm.float_bits(x[i])
            back[i] = _libm.bits_float(bits[i])

    bits, back = np.empty(values.size, itype), np.empty_like(values)
    roundtrip(values, bits, back)
    np.testing.assert_array_equal(bits, values.view(itype))
    np.testing.assert_array_equal(back.view(itype), values.view(itype))
    for v, b in zip(values, bits):
        assert _libm.float_bits(v) == b and type(_libm.float_bits(v)) is itype
        assert _libm.bits_float(itype(b)).view(itype) == b


def unit_interval_float32(step):
    """Every *step*-th float32 in [0, 1], and 1 itself."""
    bits = np.append(np.arange(0, 0x3F800000, step, dtype=np.uint32), np.uint32(0x3F800000))
    return bits.view(np.float32)


# Every 189th float32 of [0, 1] in the default run, every 7th (a superset) in -m slow.
@pytest.mark.parametrize("step", [189, pytest.param(7, marks=pytest.mark.slow)])
def test_log1p_unit_float32_dense_sweep(step):
    err, x = worst_error("log1p_unit", unit_interval_float32(step))
    print(f"float32 log1p_unit: max error {err:.3f} ULP at x={x!r}")
    assert err <= MAX_ULP_UNIT, (err, x)


@pytest.mark.exhaustive
def test_log1p_unit_float32_every_value():
    err, x = worst_error("log1p_unit", unit_interval_float32(1))
    assert err <= MAX_ULP_UNIT, (err, x)


@needs_extended
def test_log1p_unit_float64():
    rng = np.random.default_rng(11)
    x = np.concatenate(
        [rng.uniform(0, 1, 1 << 20), np.exp2(rng.uniform(-1074, 0, 1 << 18)), [0.0, 1.0, 0.4142135623730951]]
    )
    err, worst = worst_error("log1p_unit", x)
    print(f"float64 log1p_unit: max error {err:.3f} ULP at x={worst!r}")
    assert err <= MAX_ULP, (err, worst)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_restricted_functions_agree_with_the_general_ones_on_their_domain(dtype):
    """exp_nonpositive is exp without its overflow check: the same bits for
    x <= 0; log1p_unit keeps log1p's special values on [0, 1]."""
    fi = np.finfo(dtype)
    rng = np.random.default_rng(5)
    x = -np.concatenate(
        [np.abs(rng.standard_normal(10000)) * 300, [0.0, fi.max, np.inf, fi.smallest_subnormal]]
    )
    x = np.append(x.astype(dtype), dtype(np.nan))
    np.testing.assert_array_equal(compute("exp_nonpositive", x), compute("exp", x))
    special = np.array([0.0, 1.0, fi.smallest_subnormal, fi.smallest_normal, np.nan], dtype)
    got = compute("log1p_unit", special)
    np.testing.assert_array_equal(got[:4], np.log1p(special[:4].astype(np.float64)).astype(dtype))
    assert np.isnan(got[4])


@needs_extended
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_of_a_sum_rounds_once(dtype):
    """exp_nonpositive_sum(x, dx) is e**(x + dx), the exact sum, for x <= 0
    and |dx| up to an ULP of x: within about one ULP where the result is
    normal, within one subnormal spacing below."""

    @numba.njit(error_model="numpy")
    def loop(x, dx, out):
        for i in range(x.size):
            out[i] = _libm.exp_nonpositive_sum(x[i], dx[i])

    fi = np.finfo(dtype)
    rng = np.random.default_rng(6)
    x = -rng.uniform(0, -np.log(float(fi.smallest_subnormal)) + 2, 400_000).astype(dtype)
    dx = (rng.uniform(-1, 1, x.size) * np.spacing(np.abs(x))).astype(dtype)
    got = np.empty_like(x)
    loop(x, dx, got)
    ref = np.exp(x.astype(LD) + dx.astype(LD))
    normal = ref >= fi.smallest_normal
    err = ulp_error(got[normal], ref[normal], dtype)
    worst = int(np.argmax(err))
    print(f"{np.dtype(dtype)} exp of a sum: max error {float(err[worst]):.3f} ULP at x={x[normal][worst]!r}")
    assert err[worst] <= MAX_ULP, (float(err[worst]), x[normal][worst], dx[normal][worst])
    below = np.abs(got[~normal].astype(LD) - ref[~normal]) / LD(fi.smallest_subnormal)
    assert below.max() < 1, float(below.max())
