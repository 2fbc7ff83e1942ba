"""Array behaviour of fastrelu's four functions, "as NumPy's ufuncs do it".

Every expected value here comes from an independent NumPy reference:
``np.where`` / ``np.maximum`` masks for the ReLU pair (compared exactly), and
``np.longdouble`` formulas for softplus and its gradient (compared with a loose
relative tolerance; ULP-level accuracy is the business of another test file).

Covered: dtypes and their promotion, shapes (0-d, empty, 1-D, 3-D), memory
layouts (C, Fortran, strided, negative strides, permuted axes, broadcast views,
read-only) mixed between ``x``, ``grad`` and ``out``, array-likes and scalars,
``out=`` (identity, in place, partial overlap), every error path with its
message and the guarantee that a failing call leaves ``out`` untouched, and
large arrays that take the multi-threaded path.
"""

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastrelu as fr
import fastrelu.config
from fastrelu._table import KERNELS

FLOATS = [np.dtype(t) for t in (np.float16, np.float32, np.float64)]
INTS = [
    np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
]
ALL = FLOATS + INTS
REFUSED = [np.dtype(t) for t in (np.bool_, np.complex64, np.complex128, object, "U3", "S3", "datetime64[s]")]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------


def compute_dtype(result):
    """The spec: float16 is computed in float32 and rounded back."""
    result = np.dtype(result)
    return np.dtype(np.float32) if result == np.float16 else result


def softplus_dtype(xdt):
    return np.log1p(np.zeros((), xdt)).dtype


def ref_relu(x):
    x = np.asarray(x)
    zero = x.dtype.type(0)
    r = np.where(x > 0, x, zero)
    if x.dtype.kind == "f":
        r = np.where(np.isnan(x), x, r)
    return r.astype(x.dtype)


def ref_relu_backward(x, g, at_zero, result):
    """grad where x > 0, at_zero*grad where x == 0, 0 where x < 0, NaN for NaN x."""
    x, g = np.asarray(x), np.asarray(g)
    cd = compute_dtype(result)
    gc = g.astype(result).astype(cd)
    # at_zero is converted to the result dtype first, as documented: a float16
    # result is the float16 product, whatever float16 at_zero was asked for.
    a = cd.type(result.type(at_zero))
    with np.errstate(all="ignore"):
        # at_zero == 0 (after conversion to the result dtype) is a mask, not a product
        at0 = gc * a if a != 0 else np.zeros_like(gc)
        r = np.where(x > 0, gc, np.where(x == 0, at0, cd.type(0)))
        if x.dtype.kind == "f":
            r = np.where(np.isnan(x), cd.type(np.nan), r)
    return np.broadcast_to(r, np.broadcast_shapes(x.shape, g.shape)).astype(result)


def _beta_x(x, beta):
    return np.longdouble(beta) * np.asarray(x).astype(np.longdouble)


def ref_softplus(x, beta=1.0):
    """log(1 + exp(beta*x)) / beta in long double."""
    with np.errstate(all="ignore"):
        return np.logaddexp(np.longdouble(0), _beta_x(x, beta)) / np.longdouble(beta)


def ref_sigmoid(x, beta=1.0):
    bx = _beta_x(x, beta)
    one = np.longdouble(1)
    with np.errstate(all="ignore"):
        return np.where(bx >= 0, one / (one + np.exp(-bx)), np.exp(bx) / (one + np.exp(bx)))


def ref_softplus_backward(x, g, beta=1.0):
    with np.errstate(all="ignore"):
        return np.asarray(g).astype(np.longdouble) * ref_sigmoid(x, beta)


def rtol_for(dt):
    return {np.float16: 2e-3, np.float32: 1e-6, np.float64: 1e-13}[np.dtype(dt).type]


def subnormal_slack(name, grad, beta, result):
    """Absolute error allowed for an ``exp`` that lands among the subnormals of
    the compute dtype, where it has lost relative precision: softplus divides
    it by beta, softplus_backward multiplies it by grad.  (How few ULPs are
    lost is the accuracy tests' business, not this file's.)"""
    s = 2.0 * float(np.finfo(compute_dtype(result)).smallest_subnormal)
    if name == "softplus":
        return s / beta
    with np.errstate(all="ignore"):
        return s * np.abs(np.asarray(grad).astype(np.float64))


def assert_close(got, ref, dtype, slack=0.0):
    """*got* has *dtype* and equals the long double *ref* to a loose tolerance."""
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    assert got.dtype == dtype
    expected = np.asarray(ref).astype(dtype).astype(np.float64)  # rounded like the result
    actual = got.astype(np.float64)
    assert actual.shape == expected.shape
    tol = rtol_for(dtype) * np.abs(expected) + float(np.finfo(dtype).tiny) + slack
    with np.errstate(invalid="ignore"):
        ok = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
        ok |= np.abs(actual - expected) <= tol
    bad = ~np.broadcast_to(ok, actual.shape)
    assert not bad.any(), (
        f"{np.count_nonzero(bad)} of {bad.size} differ: got {actual[bad][:6]}, expected {expected[bad][:6]}"
    )


def assert_identical(got, expected, *, zero_sign=False):
    """Same type, dtype, shape and values (NaN where NaN; optionally zero signs)."""
    expected = np.asarray(expected)
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if zero_sign and got.dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


# --------------------------------------------------------------------------
# Layouts: the same logical values in different memory layouts
# --------------------------------------------------------------------------


def with_layout(a, layout):
    """A new array or view of ``a``'s values (or, for "broadcast", of part of them)."""
    a = np.asarray(a)
    if layout == "C":
        return np.array(a, order="C")
    if layout == "F":
        return np.array(a, order="F")
    if layout == "readonly":
        v = np.array(a)
        v.flags.writeable = False
        return v
    if layout == "broadcast":  # a zero-stride, read-only view of the first slab
        return np.broadcast_to(a[:1] if a.ndim else a.copy(), a.shape)
    if a.ndim == 0:  # a 0-d array has no strides to play with
        return np.array(a)
    if layout == "strided":  # every axis: step 2, offset 1, inside a bigger buffer
        buf = np.zeros(tuple(2 * n + 1 for n in a.shape), a.dtype)
        v = buf[tuple(slice(1, None, 2) for _ in a.shape)]
    elif layout == "reversed":  # negative strides on every axis
        v = np.empty_like(a, order="C")[tuple(slice(None, None, -1) for _ in a.shape)]
    elif layout == "permuted":  # axes in memory order rolled by one
        perm = [(i + 1) % a.ndim for i in range(a.ndim)]
        v = np.empty([a.shape[p] for p in perm], a.dtype).transpose(np.argsort(perm))
    else:
        raise AssertionError(layout)
    v[...] = a
    return v


IN_LAYOUTS = ["C", "F", "strided", "reversed", "permuted", "broadcast", "readonly"]
OUT_LAYOUTS = ["C", "F", "strided", "reversed", "permuted"]


def garbage(shape, dtype, layout="C"):
    """An ``out`` array filled with a value no result here equals."""
    dtype = np.dtype(dtype)
    fill = np.nan if dtype.kind == "f" else 99
    return with_layout(np.full(shape, fill, dtype), layout)


def test_layout_helper_makes_the_layouts_it_claims():
    a = np.arange(60.0).reshape(3, 4, 5)
    assert with_layout(a, "C").flags.c_contiguous
    f = with_layout(a, "F")
    assert f.flags.f_contiguous and not f.flags.c_contiguous
    for layout in ("strided", "reversed", "permuted"):
        v = with_layout(a, layout)
        assert not v.flags.c_contiguous and not v.flags.f_contiguous
        np.testing.assert_array_equal(v, a)
    assert min(with_layout(a, "reversed").strides) < 0
    assert 0 in with_layout(a, "broadcast").strides
    assert not with_layout(a, "readonly").flags.writeable


# --------------------------------------------------------------------------
# The four functions behind one interface, for parametrized tests
# --------------------------------------------------------------------------


def call(name, x, grad=None, out=None, **kw):
    f = getattr(fr, name)
    if name.endswith("backward"):
        return f(x, grad, out, **kw)
    return f(x, out, **kw)


def expected_dtype(name, x, grad=None):
    """The result dtype the spec asks for (NumPy 2 promotion, Python scalars weak)."""
    xa = np.asarray(x)
    if name == "relu":
        return xa.dtype
    if name == "softplus":
        return softplus_dtype(xa.dtype)
    g = grad if type(grad) in (int, float) else np.asarray(grad).dtype
    if name == "relu_backward":
        return np.result_type(x if type(x) in (int, float) else xa.dtype, g)
    if name == "softplus_backward":
        return np.result_type(softplus_dtype(xa.dtype), g)
    raise KeyError(f"no expected dtype for kernel {name!r}: add one here")


def reference(name, x, grad=None, *, at_zero=0.0, beta=1.0):
    """Exact (ReLU pair) or long double (softplus pair) reference of *name*."""
    if name == "relu":
        return ref_relu(x)
    if name == "relu_backward":
        return ref_relu_backward(x, grad, at_zero, expected_dtype(name, x, grad))
    if name == "softplus":
        return ref_softplus(x, beta)
    if name == "softplus_backward":
        return ref_softplus_backward(x, grad, beta)
    raise KeyError(f"no reference for kernel {name!r}: add one here")


def check(name, got, x, grad=None, **kw):
    dt = expected_dtype(name, x, grad)
    ref = reference(name, x, grad, **kw)
    if name.startswith("relu"):
        assert_identical(got, ref, zero_sign=name == "relu")
    else:
        assert_close(got, ref, dt, subnormal_slack(name, grad, kw.get("beta", 1.0), dt))


NAMES = list(KERNELS)  # each needs a reference and an expected_dtype above
UNARY = [name for name, kernel in KERNELS.items() if kernel.operands == ("x",)]
BINARY = [name for name, kernel in KERNELS.items() if kernel.operands == ("x", "grad")]
# (function, one of its array arguments)
OPERANDS = [(n, a) for n in NAMES for a in ("x", "grad") if a == "x" or n in BINARY]


# --------------------------------------------------------------------------
# Semantics on special values
# --------------------------------------------------------------------------


def special_floats(dt):
    fi = np.finfo(dt)
    return np.array(
        [
            -np.inf,
            -fi.max,
            -1.5,
            -fi.tiny,
            -fi.smallest_subnormal,
            -0.0,
            0.0,
            fi.smallest_subnormal,
            fi.tiny,
            0.5,
            1.0,
            fi.max,
            np.inf,
            np.nan,
        ],
        dtype=dt,
    )


@pytest.mark.parametrize("dt", FLOATS, ids=str)
def test_relu_special_floats(dt):
    x = special_floats(dt)
    got = fr.relu(x)
    assert_identical(got, ref_relu(x), zero_sign=True)
    # and the spec's own reference, np.maximum (blind to the sign of zero)
    np.testing.assert_array_equal(got, np.maximum(x, 0))
    assert not np.signbit(fr.relu(dt.type(-0.0)))
    assert np.isnan(fr.relu(dt.type(np.nan)))


@pytest.mark.parametrize("dt", INTS, ids=str)
def test_relu_integers_keep_their_dtype(dt):
    info = np.iinfo(dt)
    x = np.array(sorted({info.min, info.min + 1, -1 if info.min else 0, 0, 1, info.max}), dt)
    got = fr.relu(x)
    assert_identical(got, np.maximum(x, dt.type(0)))


@pytest.mark.parametrize("at_zero", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("dt", FLOATS, ids=str)
def test_relu_backward_special_values(dt, at_zero):
    # every x against every grad, by broadcasting a column against a row
    x = special_floats(dt)[:, None]
    g = np.array([1.0, -2.0, 0.0, -0.0, 3e4, np.inf, -np.inf, np.nan], dt)[None, :]
    got = fr.relu_backward(x, g, at_zero=at_zero)
    assert_identical(got, ref_relu_backward(x, g, at_zero, dt))
    xb = np.broadcast_to(x, got.shape)
    gb = np.broadcast_to(g, got.shape)
    # the spec in words, independently of the reference above
    assert np.all(got[xb < 0] == 0)  # exactly 0, even for inf/NaN grad
    assert np.array_equal(got[xb > 0], gb[xb > 0], equal_nan=True)
    assert np.all(np.isnan(got[np.isnan(xb)]))
    if at_zero == 0:
        assert np.all(got[xb == 0] == 0)
    else:
        with np.errstate(all="ignore"):
            cd = compute_dtype(dt)
            at0 = (cd.type(at_zero) * gb[xb == 0].astype(cd)).astype(dt)
        assert np.array_equal(got[xb == 0], at0, equal_nan=True)


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("dt", FLOATS, ids=str)
def test_softplus_special_values(dt, beta):
    x = special_floats(dt)
    got = fr.softplus(x, beta=beta)
    check("softplus", got, x, beta=beta)
    fi = np.finfo(dt)
    assert fr.softplus(dt.type(np.inf), beta=beta) == np.inf
    assert fr.softplus(dt.type(-np.inf), beta=beta) == 0
    assert np.isnan(fr.softplus(dt.type(np.nan), beta=beta))
    assert fr.softplus(fi.max, beta=beta) == fi.max
    assert fr.softplus(-fi.max, beta=beta) == 0


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("dt", FLOATS, ids=str)
def test_softplus_backward_special_values(dt, beta):
    x = special_floats(dt)[:, None]
    g = np.array([1.0, -2.0, 0.0, 3e4], dt)[None, :]
    got = fr.softplus_backward(x, g, beta=beta)
    check("softplus_backward", got, x, g, beta=beta)
    assert_identical(
        fr.softplus_backward(np.array([np.inf, 0.0], dt), g[0, :2], beta=beta), np.array([1.0, -1.0], dt)
    )  # grad at +inf, grad/2 at 0
    assert fr.softplus_backward(dt.type(-np.inf), dt.type(5), beta=beta) == 0
    assert np.isnan(fr.softplus_backward(dt.type(np.nan), dt.type(5), beta=beta))


@pytest.mark.parametrize("threshold", [20, 0.0, -5.0, 2.5, np.inf, -np.inf, np.float32(7)])
@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("dt", FLOATS, ids=str)
def test_threshold(dt, beta, threshold):
    # steps of 0.5: beta*x is exact in every dtype, so "beta*x > t" is unambiguous
    x = np.concatenate([np.arange(-30, 30.5, 0.5), [-np.inf, np.inf, np.nan]]).astype(dt)
    g = np.linspace(-3, 3, x.size).astype(dt)
    above = _beta_x(x, beta) > threshold
    fwd = fr.softplus(x, beta=beta, threshold=threshold)
    bwd = fr.softplus_backward(x, g, beta=beta, threshold=threshold)
    # x exactly (and grad exactly) above the threshold ...
    np.testing.assert_array_equal(fwd[above], x[above])
    np.testing.assert_array_equal(bwd[above], g[above])
    # ... the exact function everywhere else
    check("softplus", fwd[~above], x[~above], beta=beta)
    check("softplus_backward", bwd[~above], x[~above], g[~above], beta=beta)


@pytest.mark.parametrize("beta", [1e-30, 1e30, 1e39, 1e300])
@pytest.mark.parametrize("dt", [np.dtype(np.float32), np.dtype(np.float64)], ids=str)
def test_softplus_extreme_finite_beta(dt, beta):
    """A finite beta > 0 is valid, also where it does not fit the input's dtype."""
    x = np.array([-2.0, -0.0, 0.0, 1e-20, 2.0], dt)
    g = np.full(x.shape, 3.0, dt)
    check("softplus", fr.softplus(x, beta=beta), x, beta=beta)
    check("softplus_backward", fr.softplus_backward(x, g, beta=beta), x, g, beta=beta)


# --------------------------------------------------------------------------
# dtypes and promotion
# --------------------------------------------------------------------------


def sample(dt, shape=(2, 5)):
    """Values of dtype *dt* covering negatives (when signed), zero and positives."""
    dt = np.dtype(dt)
    base = np.array([-3, -1, 0, 0, 1, 2, 5, 7, -2, 4])
    if dt.kind == "u":
        base = np.abs(base)
    return base.astype(dt).reshape(shape)


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("dt", ALL, ids=str)
def test_unary_dtypes(name, dt):
    x = sample(dt)
    got = call(name, x)
    assert got.dtype == expected_dtype(name, x)
    check(name, got, x)


@pytest.mark.parametrize("gdt", ALL, ids=str)
@pytest.mark.parametrize("xdt", ALL, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_dtype_promotion(name, xdt, gdt):
    x = sample(xdt)
    g = sample(gdt)[::-1]
    got = call(name, x, g)
    if name == "relu_backward":
        assert got.dtype == np.result_type(xdt, gdt)
    else:
        assert got.dtype == np.result_type(softplus_dtype(x.dtype), gdt)
    check(name, got, x, g)


@pytest.mark.parametrize("gscalar", [2, 7, 2.5, -0.5])
@pytest.mark.parametrize("xdt", ALL, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_python_scalar_grad_is_weak(name, xdt, gscalar):
    x = sample(xdt)
    got = call(name, x, gscalar)
    want = np.result_type(x.dtype if name == "relu_backward" else softplus_dtype(x.dtype), gscalar)
    assert got.dtype == want
    check(name, got, x, gscalar)


@pytest.mark.parametrize("dt", [np.dtype(np.int8), np.dtype(np.int16)], ids=str)
def test_negative_python_int_grad(dt):
    x = np.array([-2, 0, 3], dt)
    assert_identical(fr.relu_backward(x, -3, at_zero=1), np.array([0, -3, -3], dt))


@pytest.mark.parametrize("xscalar", [2, -3, 0, 2.5, -0.5, 0.0])
@pytest.mark.parametrize("gdt", FLOATS + [np.dtype(np.int8)], ids=str)
def test_relu_backward_python_scalar_x_is_weak(gdt, xscalar):
    """np.result_type(x, grad) with a Python scalar x is weak in NumPy 2 too."""
    g = sample(gdt)
    got = fr.relu_backward(xscalar, g)
    assert got.dtype == np.result_type(xscalar, gdt)
    check("relu_backward", got, xscalar, g)


@pytest.mark.parametrize(
    "dt, big",
    [("int8", 128), ("int8", -129), ("uint8", 256), ("uint8", -3), ("int16", 40000), ("uint64", -1)],
)
def test_relu_backward_python_int_grad_out_of_range(dt, big):
    """NumPy 2 refuses a weak Python int that does not fit the array's dtype,
    rather than wrapping it around."""
    x = np.array([1, 0, 1], dt)
    with pytest.raises(OverflowError):
        np.multiply(x, big)  # the NumPy behaviour the spec refers to
    out = garbage(x.shape, dt)
    assert_fails_untouched(OverflowError, None, "relu_backward", x, big, out)


@pytest.mark.parametrize("dt", ALL, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_non_native_byte_order_is_computed(name, dt):
    """A byte-swapped input is computed like its native twin; results are native."""
    x = sample(dt).astype(dt.newbyteorder())
    g = sample(dt)
    got = call(name, x, g)
    assert got.dtype.isnative
    check(name, got, sample(dt), g)


@pytest.mark.parametrize("dt", REFUSED, ids=str)
@pytest.mark.parametrize("name, arg", OPERANDS)
def test_refused_dtypes(name, arg, dt):
    bad = np.zeros(3, dt)
    good = np.ones(3)
    x, g = (bad, good) if arg == "x" else (good, bad)
    with pytest.raises(TypeError, match=rf"{arg}\b.*{re.escape(str(dt))}"):
        call(name, x, g)


@pytest.mark.parametrize(
    "value, dtname",
    [
        (True, "bool"),
        (1 + 2j, "complex128"),
        ("a", "<U1"),
        (None, "object"),
        ([1, "a"], "<U"),
        ([[1], [2, 3]], None),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_refused_array_likes(name, value, dtname):
    with pytest.raises((TypeError, ValueError)) as info:
        call(name, value, np.ones(1))
    if dtname is not None:
        assert info.type is TypeError
        assert dtname in str(info.value)


# --------------------------------------------------------------------------
# Shapes, array-likes, scalars
# --------------------------------------------------------------------------


SHAPES = [(), (0,), (0, 3), (7,), (2, 3, 4)]


@pytest.mark.parametrize("dt", [np.dtype(np.float16), np.dtype(np.float64), np.dtype(np.int32)], ids=str)
@pytest.mark.parametrize("with_out", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_shapes(name, shape, with_out, dt):
    n = math.prod(shape)
    x = (np.arange(n) - n // 2).astype(dt).reshape(shape)
    g = (np.arange(n)[::-1] - 1.5).astype(dt if dt.kind == "f" else np.float32).reshape(shape)
    out = garbage(shape, expected_dtype(name, x, g)) if with_out else None
    got = call(name, x, g, out)
    if with_out:
        assert got is out
    elif shape == ():
        assert isinstance(got, np.generic) and not isinstance(got, np.ndarray)
        got = np.asarray(got)
    else:
        assert isinstance(got, np.ndarray) and got.shape == shape
    check(name, got, x, g)


@pytest.mark.parametrize(
    "x",
    [
        -2,
        3,
        0,
        -1.5,
        2.5,
        -0.0,
        np.float16(-1),
        np.float32(2),
        np.float64(-0.0),
        np.int8(-3),
        np.uint16(4),
        np.array(-2.5),
        np.array(7, np.int64),
    ],
    ids=repr,
)
@pytest.mark.parametrize("name", NAMES)
def test_scalar_in_numpy_scalar_out(name, x):
    g = 3.0
    got = call(name, x, g)
    assert isinstance(got, np.generic), type(got)
    assert got.dtype == expected_dtype(name, x, g)
    check(name, np.asarray(got), x, g)


@pytest.mark.parametrize("name", NAMES)
def test_zero_d_with_out_returns_out(name):
    x = np.array(-0.5)
    out = np.empty(())
    got = call(name, x, 2.0, out)
    assert got is out
    check(name, out, x, 2.0)


@pytest.mark.parametrize(
    "x, g",
    [
        ([-1, 0, 2], [1.5, 2.5, -1.0]),
        ([[-1.5, 0.0], [2.0, -0.0]], [[1, 2], [3, 4]]),
        ((1, -2, 3), 2.0),
        ([-2.0, 3.0], [[1.0], [2.0]]),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_lists_and_tuples(name, x, g):
    got = call(name, x, g)
    assert isinstance(got, np.ndarray)
    check(name, got, x, g)


@pytest.mark.parametrize(
    "xs, gs",
    [((3,), (4,)), ((2, 3), (3, 2)), ((2, 1, 3), (4, 2)), ((0,), (2,)), ((5,), (2, 3))],
)
@pytest.mark.parametrize("name", BINARY)
def test_broadcast_error_names_both_shapes(name, xs, gs):
    msg = rf"{re.escape(str(xs))}.*{re.escape(str(gs))}"
    with pytest.raises(ValueError, match=msg):
        call(name, np.ones(xs), np.ones(gs))


@pytest.mark.parametrize(
    "xs, gs", [((3,), ()), ((), (2, 3)), ((4, 1), (3,)), ((2, 1, 3), (4, 1)), ((0, 1), (1, 5))]
)
@pytest.mark.parametrize("name", BINARY)
def test_broadcasting(name, xs, gs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=xs) * 3
    x.flat[::3] = 0.0
    g = rng.normal(size=gs)
    got = call(name, x, g)
    assert got.shape == np.broadcast_shapes(xs, gs)
    check(name, np.asarray(got), x, g)


# --------------------------------------------------------------------------
# Memory layouts, mixed between the operands
# --------------------------------------------------------------------------


@pytest.fixture(params=[None, 7], ids=["whole", "pieces_of_7"])
def buffer_size(request):
    """The default buffers, or buffers of 7 elements: a converting,
    broadcasting or gathering call then works through many pieces, cut across
    rows and axes."""
    with fastrelu.config.set(buffer_size=request.param or fastrelu.config.BUFFER_SIZE):
        yield request.param


def operands(dt=np.float64, shape=(3, 4, 5), seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * 4).round().astype(dt)  # many exact zeros
    g = rng.normal(size=shape).astype(dt)
    return x, g


@pytest.mark.parametrize("dt", [np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.int16)], ids=str)
@pytest.mark.parametrize("out_layout", [None] + OUT_LAYOUTS)
@pytest.mark.parametrize("x_layout", IN_LAYOUTS)
@pytest.mark.parametrize("name", UNARY)
@pytest.mark.usefixtures("buffer_size")
def test_unary_layouts(name, x_layout, out_layout, dt):
    x0, _ = operands(dt)
    x = with_layout(x0, x_layout)
    out = None if out_layout is None else garbage(x.shape, expected_dtype(name, x), out_layout)
    got = call(name, x, out=out)
    if out is not None:
        assert got is out
    check(name, got, np.array(x))
    np.testing.assert_array_equal(x, with_layout(x0, x_layout))  # input unchanged


@pytest.mark.parametrize("out_layout", [None] + OUT_LAYOUTS)
@pytest.mark.parametrize("g_layout", IN_LAYOUTS)
@pytest.mark.parametrize("x_layout", IN_LAYOUTS)
@pytest.mark.parametrize("name", BINARY)
@pytest.mark.usefixtures("buffer_size")
def test_binary_layouts(name, x_layout, g_layout, out_layout):
    # one dtype for all three: contiguous operands can then be used in place
    # (dtype mixtures with layouts are the hypothesis tests' part)
    x0, g0 = operands(np.float32)
    x, g = with_layout(x0, x_layout), with_layout(g0, g_layout)
    out = None if out_layout is None else garbage(x.shape, np.float32, out_layout)
    kw = {"at_zero": 0.5} if name == "relu_backward" else {"beta": 2.0}
    got = call(name, x, g, out, **kw)
    if out is not None:
        assert got is out
    check(name, got, np.array(x), np.array(g), **kw)


def test_fresh_result_of_fortran_inputs():
    x, g = operands()
    got = fr.relu_backward(np.asfortranarray(x), np.asfortranarray(g))
    assert_identical(got, ref_relu_backward(x, g, 0.0, x.dtype))


# --------------------------------------------------------------------------
# out=: identity, in place, partial overlap
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [np.dtype(np.float64), np.dtype(np.float16)], ids=str)
@pytest.mark.parametrize("layout", OUT_LAYOUTS)
@pytest.mark.parametrize("name, target", OPERANDS)
@pytest.mark.usefixtures("buffer_size")
def test_in_place(name, target, layout, dt):
    x0, g0 = operands(dt)
    x, g = with_layout(x0, layout), with_layout(g0, layout)
    out = x if target == "x" else g
    got = call(name, x, g, out)
    assert got is out
    check(name, got, x0, g0)


@pytest.mark.parametrize("dt", [np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.int64)], ids=str)
@pytest.mark.parametrize(
    "split",
    ["out_ahead", "out_behind", "rows_C", "cols_F", "reversed", "block_reversed", "transposed"],
)
@pytest.mark.parametrize("name, target", OPERANDS)
@pytest.mark.usefixtures("buffer_size")
def test_partial_overlap_equals_computing_from_a_copy(name, target, split, dt):
    if dt.kind == "i" and name.startswith("softplus"):
        dt = np.dtype(np.float64)  # out must hold softplus's float result
    rng = np.random.default_rng(1)
    buf = (rng.normal(size=(9, 8)) * 3).round().astype(dt)
    if split == "out_ahead":
        a, out = buf.reshape(-1)[:-3], buf.reshape(-1)[3:]
    elif split == "out_behind":
        a, out = buf.reshape(-1)[3:], buf.reshape(-1)[:-3]
    elif split == "rows_C":
        a, out = buf[:-1], buf[1:]
    elif split == "cols_F":
        buf = np.asfortranarray(buf)
        a, out = buf[:, 1:], buf[:, :-1]
    elif split == "reversed":
        a, out = buf.reshape(-1)[:-1], buf.reshape(-1)[:0:-1]
    elif split == "block_reversed":  # the same block, read the other way round
        a, out = buf[:8], buf[:8][::-1, ::-1]
    else:  # the same block, C order in, F order out
        a, out = buf[:8], buf[:8].T
    other = (rng.normal(size=a.shape) * 3).round().astype(dt)
    x, g = (a, other) if target == "x" else (other, a)
    x_copy, g_copy = x.copy(), g.copy()
    got = call(name, x, g, out)
    assert got is out
    check(name, got, x_copy, g_copy)


# --------------------------------------------------------------------------
# Errors leave out untouched
# --------------------------------------------------------------------------


def assert_fails_untouched(exc, match, name, x, g, out, **kw):
    before = out.tobytes()
    with pytest.raises(exc, match=match):
        call(name, x, g, out, **kw)
    assert out.tobytes() == before


def _readonly(a):
    a.flags.writeable = False
    return a


BAD_OUTS = [
    ("shape", lambda s, d: np.full(s[:-1] + (s[-1] + 1,), np.nan, d), ValueError, r"out has shape"),
    ("shape_transposed", lambda s, d: np.full(s[::-1], np.nan, d), ValueError, r"shape"),
    ("shape_0d", lambda s, d: np.full((), np.nan, d), ValueError, r"shape"),
    (
        "dtype",
        lambda s, d: np.full(s, 7, np.float32 if d == np.float64 else np.float64),
        TypeError,
        r"out has dtype",
    ),
    ("dtype_int", lambda s, d: np.full(s, 7, np.int64), TypeError, r"dtype"),
    ("readonly", lambda s, d: _readonly(np.full(s, np.nan, d)), ValueError, r"read-only"),
    ("broadcast_view", lambda s, d: np.broadcast_to(np.full(s[-1:], np.nan, d), s), ValueError, r"read-only"),
]


@pytest.mark.parametrize("kind, make, exc, match", BAD_OUTS, ids=[b[0] for b in BAD_OUTS])
@pytest.mark.parametrize("name", NAMES)
def test_unusable_out(name, kind, make, exc, match):
    x, g = operands(np.float64, (4, 3))
    out = make(x.shape, np.float64)
    assert_fails_untouched(exc, match, name, x, g, out)


@pytest.mark.parametrize("out", [[0.0] * 3, (0.0,) * 3, 0.0, "out"], ids=repr)
@pytest.mark.parametrize("name", NAMES)
def test_out_not_an_ndarray(name, out):
    with pytest.raises(TypeError, match="out"):
        call(name, np.ones(3), np.ones(3), out)


@pytest.mark.parametrize("name", NAMES)
def test_in_place_into_a_read_only_input(name):
    x = _readonly(np.array([-1.0, 0.0, 2.0]))
    assert_fails_untouched(ValueError, "read-only", name, x, np.ones(3), x)


def test_int_input_cannot_receive_a_float_result_in_place():
    x = np.array([-1, 0, 2], np.int64)
    assert_fails_untouched(TypeError, "dtype", "relu_backward", x, np.ones(3), x)
    assert_fails_untouched(TypeError, "dtype", "softplus", x, None, x)


@pytest.mark.parametrize("name", NAMES)
def test_refused_dtype_leaves_out_untouched(name):
    out = garbage((3,), np.float64)
    assert_fails_untouched(TypeError, "complex", name, np.ones(3, complex), np.ones(3), out)
    if name in BINARY:
        assert_fails_untouched(TypeError, "bool", name, np.ones(3), np.ones(3, bool), out)


@pytest.mark.parametrize("name", BINARY)
def test_broadcast_error_leaves_out_untouched(name):
    out = garbage((3,), np.float64)
    assert_fails_untouched(ValueError, r"\(3,\).*\(4,\)", name, np.ones(3), np.ones(4), out)


# --------------------------------------------------------------------------
# Parameter validation
# --------------------------------------------------------------------------


BAD_AT_ZERO = [
    float("nan"),
    np.nan,
    np.float32("nan"),
    1.5,
    -0.1,
    2,
    -1,
    math.inf,
    -math.inf,
    1.0000001,
    "a",
    "0.5",
    True,
    False,
    np.True_,
    None,
    0.5j,
    [0.5],
]


def assert_bad_parameter(name, **kw):
    """ValueError naming the parameter, raised before ``out`` is written."""
    x, g = operands(np.float64, (4, 3))
    out = garbage(x.shape, np.float64, "strided")
    assert_fails_untouched(ValueError, next(iter(kw)), name, x, g, out, **kw)


@pytest.mark.parametrize("at_zero", BAD_AT_ZERO, ids=repr)
def test_bad_at_zero(at_zero):
    assert_bad_parameter("relu_backward", at_zero=at_zero)


@pytest.mark.parametrize(
    "at_zero", [0, 1, 0.0, 1.0, 0.5, 1e-300, np.float32(0.75), np.int8(1), np.uint64(0)], ids=repr
)
def test_good_at_zero(at_zero):
    x = np.array([-1.0, -0.0, 0.0, 2.0])
    g = np.array([4.0, 4.0, -8.0, 4.0])
    got = fr.relu_backward(x, g, at_zero=at_zero)
    assert_identical(got, ref_relu_backward(x, g, float(at_zero), x.dtype))


@pytest.mark.parametrize("at_zero", [0.5, 1e-9, 0.999])
@pytest.mark.parametrize("dt", INTS, ids=str)
def test_at_zero_fraction_refused_for_integer_result(dt, at_zero):
    x = sample(dt)
    out = garbage(x.shape, dt)
    assert_fails_untouched(ValueError, r"at_zero.*0 or 1", "relu_backward", x, x, out, at_zero=at_zero)


@pytest.mark.parametrize("at_zero", [0, 1, 0.0, 1.0])
@pytest.mark.parametrize("dt", INTS, ids=str)
def test_integer_result_at_zero_0_or_1(dt, at_zero):
    x = sample(dt)
    g = sample(dt)[:, ::-1]
    got = fr.relu_backward(x, g, at_zero=at_zero)
    assert_identical(got, ref_relu_backward(x, g, at_zero, dt))


def test_integer_x_with_float_grad_takes_any_at_zero():
    x = np.array([-2, 0, 3], np.int32)
    got = fr.relu_backward(x, np.array([2.0, 2.0, 2.0], np.float32), at_zero=0.5)
    assert_identical(got, np.array([0.0, 1.0, 2.0]))  # int32 with float32 is float64


BAD_BETA = [
    0,
    0.0,
    -0.0,
    -1,
    -1e-300,
    math.inf,
    -math.inf,
    float("nan"),
    np.float64("nan"),
    np.float32("inf"),
    "a",
    "1",
    None,
    1j,
    [1.0],
]


@pytest.mark.parametrize("beta", BAD_BETA, ids=repr)
@pytest.mark.parametrize("name", ["softplus", "softplus_backward"])
def test_bad_beta(name, beta):
    assert_bad_parameter(name, beta=beta)


BAD_THRESHOLD = [float("nan"), np.nan, np.float32("nan"), "a", "20", 1j, [20.0]]


@pytest.mark.parametrize("threshold", BAD_THRESHOLD, ids=repr)
@pytest.mark.parametrize("name", ["softplus", "softplus_backward"])
def test_bad_threshold(name, threshold):
    assert_bad_parameter(name, threshold=threshold)


@pytest.mark.parametrize("beta", [1, 2, 0.25, np.float32(1.5), np.int64(3), 1e-3, 50.0], ids=repr)
@pytest.mark.parametrize("name", ["softplus", "softplus_backward"])
def test_good_beta(name, beta):
    x, g = operands(np.float64, (6,))
    check(name, call(name, x, g, beta=beta), x, g, beta=float(beta))


# --------------------------------------------------------------------------
# Large arrays: the multi-threaded path
# --------------------------------------------------------------------------


@pytest.fixture
def many_threads():
    before = fr.get_num_threads()
    fr.set_num_threads(4)  # split even on a small machine
    yield
    fr.set_num_threads(before)


def parallel_size(name):
    """A number of elements (> 2**17) for which kernel *name* runs on several threads."""
    return max(fastrelu.config.PARALLEL_MIN_SIZE[name], 2**17) + 1000  # not a multiple of the chunk alignment


def large_shape(name):
    return (-(-parallel_size(name) // 600), 600)


@pytest.mark.usefixtures("many_threads")
@pytest.mark.parametrize("dt", [np.dtype(np.float32), np.dtype(np.float16)], ids=str)
@pytest.mark.parametrize(
    "x_layout, g_layout, out_layout",
    [
        ("C", "C", None),
        ("C", "C", "C"),
        ("strided", "F", None),
        ("reversed", "broadcast", "strided"),
        ("F", "F", "F"),
        ("permuted", "C", "reversed"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_large(name, x_layout, g_layout, out_layout, dt):
    shape = large_shape(name)
    x0, g0 = operands(dt, shape, seed=3)
    x, g = with_layout(x0, x_layout), with_layout(g0, g_layout)
    out = None if out_layout is None else garbage(shape, expected_dtype(name, x, g), out_layout)
    got = call(name, x, g, out)
    if out is not None:
        assert got is out
    check(name, got, np.array(x), np.array(g))


@pytest.mark.usefixtures("many_threads")
@pytest.mark.parametrize("kind", ["float64", "narrow"])
@pytest.mark.parametrize("shift", [0, 5, -5], ids=["in_place", "out_ahead", "out_behind"])
@pytest.mark.parametrize("name, target", OPERANDS)
def test_large_in_place_and_overlap(name, target, shift, kind):
    if kind == "narrow":  # through the integer kernels, or float16's float32 buffers
        dt = np.dtype(np.int32 if name.startswith("relu") else np.float16)
    else:
        dt = np.dtype(np.float64)
    n = parallel_size(name)
    rng = np.random.default_rng(5)
    buf = (rng.normal(size=n + 5) * 3).round().astype(dt)
    a = buf[max(-shift, 0) :][:n]
    out = buf[max(shift, 0) :][:n]
    other = rng.normal(size=n).astype(dt)
    x, g = (a, other) if target == "x" else (other, a)
    xc, gc = x.copy(), g.copy()
    got = call(name, x, g, out)
    assert got is out
    check(name, got, xc, gc)


@pytest.mark.parametrize(
    "case",
    ["float16", "float16_strided_out", "int16_to_float32", "broadcast_grad", "strided_x", "partial_overlap"],
)
@pytest.mark.parametrize("name", NAMES)
def test_converting_calls_need_a_few_buffers_not_copies(name, case):
    """Conversions, broadcasting and gathers go through buffers of
    config.BUFFER_SIZE elements: the memory a call needs beyond its result is
    a few buffers, however large the arrays (NumPy's own loops need none)."""
    import tracemalloc

    size = 2**12
    with fastrelu.config.set(buffer_size=size):
        rng = np.random.default_rng(8)
        n = 2**20
        dt = np.dtype(np.float16)
        x = rng.normal(size=n).astype(dt)
        g = rng.normal(size=n).astype(dt)
        if case == "int16_to_float32":
            x = (x * 100).astype(np.int16)
            g = g.astype(np.float32) if name.endswith("backward") else g
        elif case == "broadcast_grad":
            x = x.astype(np.float32).reshape(2**10, 2**10)
            g = g[: 2**10].astype(np.float32)
        elif case == "strided_x":
            x = np.repeat(x.astype(np.float32), 2)[::2]
            g = g.astype(np.float32)
        elif case == "partial_overlap":
            buf = rng.normal(size=n + 3).astype(np.float32)
            x, g = buf[3:], g.astype(np.float32)
        shape = np.broadcast_shapes(x.shape, g.shape) if name.endswith("backward") else x.shape
        out = np.empty(shape, expected_dtype(name, x, g))
        if case == "float16_strided_out":
            out = np.empty((2 * n,), out.dtype)[::2]
        elif case == "partial_overlap":
            out = buf[:-3]
        x_copy, g_copy = np.array(x), np.array(g)
        call(name, x, g, out)  # compiled, and the threads made, before the measurement
        if case == "partial_overlap":
            buf[3:] = x_copy
        tracemalloc.start()
        try:
            call(name, x, g, out)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # One buffer of 8-byte elements per operand and the result, plus what
        # nditer and the call keep; a copy of an operand (for a partial overlap,
        # the one that overlaps) is allowed only where it must be made.
        allowed = 3 * size * 8 + 64 * 1024 + (x_copy.nbytes if case == "partial_overlap" else 0)
        assert peak <= allowed, f"{peak / 2**20:.1f} MiB beyond out for {2**20} elements"
        check(name, out, x_copy, g_copy)


# --------------------------------------------------------------------------
# Hypothesis: random dtypes, shapes, values and layouts
# --------------------------------------------------------------------------


@st.composite
def laid_out(draw, dtype, shape, finite=False):
    elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False) if finite else None
    a = draw(hnp.arrays(dtype, shape, elements=elements))
    return with_layout(a, draw(st.sampled_from(IN_LAYOUTS)))


@st.composite
def maybe_out(draw, shape, dtype):
    layout = draw(st.sampled_from([None] + OUT_LAYOUTS))
    return None if layout is None else garbage(shape, dtype, layout)


shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
two_shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4)


@SETTINGS
@given(data=st.data(), dt=st.sampled_from(ALL), shape=shapes)
def test_hyp_relu(data, dt, shape):
    x = data.draw(laid_out(dt, shape))
    out = data.draw(maybe_out(shape, dt))
    got = fr.relu(x, out)
    if out is not None:
        assert got is out
    if shape == ():
        got = np.asarray(got)
    assert_identical(got, ref_relu(np.array(x)), zero_sign=True)


@SETTINGS
@given(data=st.data(), xdt=st.sampled_from(ALL), gdt=st.sampled_from(ALL), shapes=two_shapes)
def test_hyp_relu_backward(data, xdt, gdt, shapes):
    (xs, gs), shape = shapes.input_shapes, shapes.result_shape
    x = data.draw(laid_out(xdt, xs), label="x")
    g = data.draw(laid_out(gdt, gs), label="grad")
    result = np.result_type(xdt, gdt)
    if result.kind in "iu":
        at_zero = data.draw(st.sampled_from([0, 1]), label="at_zero")
    else:
        at_zero = data.draw(st.floats(0, 1), label="at_zero")
    out = data.draw(maybe_out(shape, result))
    got = fr.relu_backward(x, g, out, at_zero=at_zero)
    if out is not None:
        assert got is out
    assert_identical(np.asarray(got), ref_relu_backward(np.array(x), np.array(g), at_zero, result))


betas = st.sampled_from([1.0]) | st.floats(1e-2, 1e2)
thresholds = st.none() | st.floats(-50, 50)


def split_threshold(name, x, g, beta, threshold, got):
    """Check *got* against x (or grad) above the threshold and the reference below."""
    x, g = np.array(x), (None if g is None else np.array(g))
    shape = got.shape
    above = np.broadcast_to(_beta_x(x, beta) > (np.inf if threshold is None else threshold), shape)
    if threshold is not None:
        # stay clear of "beta*x == threshold" decided in the compute dtype
        with np.errstate(over="ignore"):  # a product beyond float64 is not near any threshold
            near = np.isclose(_beta_x(x, beta).astype(np.float64), threshold, rtol=1e-3, atol=1e-3)
        keep = ~np.broadcast_to(near, shape)
    else:
        keep = np.ones(shape, bool)
    passthrough = np.broadcast_to(x if g is None else g, shape).astype(got.dtype)
    ref = np.broadcast_to(reference(name, x, g, beta=beta), shape)
    slack = np.broadcast_to(subnormal_slack(name, g, beta, got.dtype), shape)
    np.testing.assert_array_equal(got[above & keep], passthrough[above & keep])
    below = ~above & keep
    assert_close(got[below], ref[below], got.dtype, slack[below])


def call_into(out, result, func, *args, **kwargs):
    """``func(*args, out, **kwargs)``, checking that *out* (if any) is returned
    and that the result has dtype *result*."""
    got = func(*args, out, **kwargs)
    if out is not None:
        assert got is out
    got = np.asarray(got)
    assert got.dtype == result
    return got


@SETTINGS
@given(data=st.data(), dt=st.sampled_from(ALL), shape=shapes, beta=betas, threshold=thresholds)
def test_hyp_softplus(data, dt, shape, beta, threshold):
    x = data.draw(laid_out(dt, shape))
    result = softplus_dtype(dt)
    out = data.draw(maybe_out(shape, result))
    got = call_into(out, result, fr.softplus, x, beta=beta, threshold=threshold)
    split_threshold("softplus", x, None, beta, threshold, got)


@SETTINGS
@given(
    data=st.data(),
    xdt=st.sampled_from(ALL),
    gdt=st.sampled_from(FLOATS + INTS[:2]),
    shapes=two_shapes,
    beta=betas,
    threshold=thresholds,
)
def test_hyp_softplus_backward(data, xdt, gdt, shapes, beta, threshold):
    (xs, gs), shape = shapes.input_shapes, shapes.result_shape
    x = data.draw(laid_out(xdt, xs), label="x")
    # finite grads: inf * sigmoid underflowing to 0 is NaN, a matter of accuracy
    g = data.draw(laid_out(gdt, gs, finite=True), label="grad")
    result = np.result_type(softplus_dtype(xdt), gdt)
    out = data.draw(maybe_out(shape, result))
    got = call_into(out, result, fr.softplus_backward, x, g, beta=beta, threshold=threshold)
    split_threshold("softplus_backward", x, g, beta, threshold, got)


@SETTINGS
@given(
    data=st.data(),
    name=st.sampled_from(NAMES),
    dt=st.sampled_from(FLOATS),
    n=st.integers(2, 40),
    shift=st.integers(-5, 5),
    step=st.sampled_from([1, -1, 2]),
)
def test_hyp_partial_overlap(data, name, dt, n, shift, step):
    buf = data.draw(hnp.arrays(dt, n + 12, elements=st.floats(-20, 20, width=dt.itemsize * 8)))
    a = buf[6 : 6 + n][::step]
    out = buf[6 + shift : 6 + shift + n][::step]
    other = np.linspace(-2, 2, a.size).astype(dt)
    ac, oc = a.copy(), other.copy()
    x, g = (a, other) if data.draw(st.booleans(), label="x overlaps") else (other, a)
    xc, gc = (ac, oc) if x is a else (oc, ac)
    got = call(name, x, g, out)
    assert got is out
    check(name, got, xc, gc)


# --------------------------------------------------------------------------
# A worked example: ReLU followed by a mean squared error
# --------------------------------------------------------------------------


@pytest.mark.parametrize("at_zero, literal", [(0.0, [0.0, 0.0, 0.0, 0.5]), (1.0, [0.0, -0.5, 0.0, 0.5])])
def test_worked_example_relu_mse(at_zero, literal):
    x = np.array([-1.0, 0.0, 1.0, 2.0])
    y = fr.relu(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    loss = np.mean((y - 1) ** 2)
    assert loss == pytest.approx(((0 - 1) ** 2 + (0 - 1) ** 2 + 0 + 1) / 4)
    upstream = 2 * (y - 1) / x.size  # dL/dy
    dx = fr.relu_backward(x, upstream, at_zero=at_zero)
    mask = np.where(x > 0, 1.0, 0.0) if at_zero == 0 else np.where(x >= 0, 1.0, 0.0)
    assert_identical(dx, mask * upstream)
    assert_identical(dx, np.array(literal))
    # where ReLU is differentiable (x != 0), a central difference agrees
    h = 1e-6
    for i in np.flatnonzero(x != 0):
        e = np.zeros_like(x)
        e[i] = h
        num = (np.mean((np.maximum(x + e, 0) - 1) ** 2) - np.mean((np.maximum(x - e, 0) - 1) ** 2)) / (2 * h)
        assert dx[i] == pytest.approx(num, abs=1e-6)


def test_at_zero_is_rounded_to_the_result_dtype_first():
    """Found by hypothesis: with a float16 result, at_zero is a float16 before
    it multiplies grad, so the result is the float16 product (here 118.4, where
    the float32 at_zero would give 118.44)."""
    at_zero = 0.9785794952940261
    got = fr.relu_backward(np.float16(0), np.int8(121), at_zero=at_zero)
    want = np.float16(np.float32(np.float16(at_zero)) * np.float32(121))
    assert got == want and got.dtype == np.float16
    assert got != np.float16(np.float32(at_zero) * np.float32(121))
