"""Accuracy of softplus and its gradient, in ULP, against independent references."""

import numpy as np
import pytest
from reference import (
    HAVE_EXTENDED,
    sigmoid_ld,
    sigmoid_mp,
    softplus_ld,
    softplus_mp,
    ulp_error,
)

import fastrelu

MAX_ULP = 4.0


def assert_within_bound(err, x):
    """Assert the ULP bound; print the largest error (shown by ``pytest -rP``)."""
    worst = int(np.argmax(err))
    print(f"max error {float(err[worst]):.2f} ULP at x={x[worst]!r}")
    assert err[worst] <= MAX_ULP, f"{float(err[worst]):.2f} ULP at x={x[worst]!r}"


needs_extended = pytest.mark.skipif(not HAVE_EXTENDED, reason="long double is not extended precision here")


def float32_sweep(step=251, beta=1.0):
    """Every *step*-th float32 bit pattern over the finite numbers of both
    signs, divided by *beta* (dropping what overflows)."""
    bits = np.arange(0, 0x7F800000, step, dtype=np.uint32)
    pos = bits.view(np.float32)
    with np.errstate(over="ignore"):
        x = np.concatenate([pos, -pos]) / np.float32(beta)
    return x[np.isfinite(x)]


def float64_samples(rng, n=4000, scale=800.0):
    """Uniform in [-scale, scale], log-uniform magnitudes over the whole range, and tiny ones."""
    uniform = rng.uniform(-scale, scale, n)
    mags = np.exp2(rng.uniform(-1074, 1024, n))
    signs = rng.choice([-1.0, 1.0], n)
    return np.concatenate([uniform, signs * mags, rng.uniform(-4, 4, n // 4)])


def scaled_samples(rng, beta, n):
    """float64 samples divided by beta, dropping those that overflow."""
    with np.errstate(over="ignore"):
        x = float64_samples(rng, n) / beta
    return x[np.isfinite(x)]


# The float32 sweeps of every 251st (softplus) or 509th (sigmoid) bit
# pattern: every 9th of those in the default run, all of them in -m slow.
# beta = 0.5 has no dense sweep: a power of two, it computes what beta = 1
# does, at twice the x.
SWEEPS = [pytest.param(beta, 9, id=f"{beta}-coarse") for beta in (1.0, 0.5, 3.7, 100.0)] + [
    pytest.param(beta, 1, id=f"{beta}-dense", marks=pytest.mark.slow) for beta in (1.0, 3.7, 100.0)
]


@needs_extended
@pytest.mark.parametrize("beta, coarse", SWEEPS)
def test_softplus_float32_dense_sweep(beta, coarse):
    x = float32_sweep(251 * coarse, beta)
    err = ulp_error(fastrelu.softplus(x, beta=beta), softplus_ld(x, beta), np.float32)
    assert_within_bound(err, x)


@needs_extended
@pytest.mark.parametrize("beta, coarse", SWEEPS)
def test_sigmoid_float32_dense_sweep(beta, coarse):
    """softplus_backward with grad=1 is sigmoid; checked where sigmoid is a normal float."""
    x = float32_sweep(509 * coarse, beta)
    ref = sigmoid_ld(x, beta)
    keep = ref >= np.finfo(np.float32).smallest_normal
    err = ulp_error(fastrelu.softplus_backward(x, np.float32(1), beta=beta)[keep], ref[keep], np.float32)
    assert_within_bound(err, x[keep])


@needs_extended
def test_softplus_float64_beta1_against_long_double():
    rng = np.random.default_rng(1)
    x = float64_samples(rng, 200_000)
    err = ulp_error(fastrelu.softplus(x), softplus_ld(x), np.float64)
    assert_within_bound(err, x)


@pytest.mark.parametrize("beta", [1.0, 0.5, 3.7, 100.0])
def test_softplus_float64_against_mpmath(beta):
    rng = np.random.default_rng(2)
    x = scaled_samples(rng, beta, 1500)
    err = ulp_error(fastrelu.softplus(x, beta=beta), softplus_mp(x, beta), np.float64)
    assert_within_bound(err, x)


@pytest.mark.parametrize("beta", [1.0, 0.5, 3.7, 100.0])
def test_softplus_backward_float64_against_mpmath(beta):
    rng = np.random.default_rng(3)
    x = scaled_samples(rng, beta, 1500)
    grad = rng.uniform(-3, 3, x.size)
    ref = sigmoid_mp(x, beta)
    keep = ref >= np.finfo(np.float64).smallest_normal
    got = fastrelu.softplus_backward(x, grad, beta=beta)
    err = ulp_error(got[keep], ref[keep] * grad[keep].astype(np.longdouble), np.float64)
    assert_within_bound(err, x[keep])


@pytest.mark.parametrize(
    "dtype, beta, x, grad",
    [
        (np.float32, 0.1, -73.843506, 0.3840256),
        (np.float64, 1 / 3, -53.77921619097315, 7.203888333402046),
        (np.float64, 3.7, -9.336040598514037, -3.4412926855928205),
    ],
)
def test_softplus_backward_where_the_bound_was_once_broken(dtype, beta, x, grad):
    """Inputs a search of a million per beta found beyond 4 ULP (4.2-4.3)
    when the product's rounding error was applied as a factor (1 + c)."""
    x, grad = np.array([x], dtype), np.array([grad], dtype)
    got = fastrelu.softplus_backward(x, grad, beta=beta)
    ref = sigmoid_mp(x.astype(np.float64), beta) * grad.astype(np.longdouble)
    assert_within_bound(ulp_error(got, ref, dtype), x)


def check_gradient_with_rounded_products(dtype, beta, n):
    """grad * sigmoid(beta x) within the bound wherever sigmoid is normal, on
    1.1 *n* inputs, mostly in the exponential tail t < 0 (where the
    product's rounding error is a relative error of the result), with
    gradients of sizes 0.01 to 100: screened against long double, the 100
    worst checked against mpmath."""
    rng = np.random.default_rng(6)
    fi = np.finfo(dtype)
    t = np.concatenate([rng.uniform(np.log(fi.smallest_normal) + 0.01, 0, n), rng.uniform(0, 40, n // 10)])
    x = (t / beta).astype(dtype)
    grad = (rng.standard_normal(x.size) * rng.choice([0.01, 1.0, 100.0], x.size)).astype(dtype)
    got = fastrelu.softplus_backward(x, grad, beta=beta)
    ref = sigmoid_ld(x, beta) * grad.astype(np.longdouble)
    keep = (sigmoid_ld(x, beta) >= fi.smallest_normal) & (np.abs(ref) >= fi.smallest_normal)
    got, x, grad = got[keep], x[keep], grad[keep]
    worst = np.argsort(ulp_error(got, ref[keep], dtype))[-100:]
    exact = sigmoid_mp(x[worst].astype(np.float64), beta, prec=200) * grad[worst].astype(np.longdouble)
    assert_within_bound(ulp_error(got[worst], exact, dtype), x[worst])


@needs_extended
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.1, 1 / 3, 0.7, 3.7, 10.0])
def test_softplus_backward_with_any_beta_and_gradient(dtype, beta):
    check_gradient_with_rounded_products(dtype, beta, 300_000)


# Ten times as many inputs, by hand (-m exhaustive).
@pytest.mark.exhaustive
@needs_extended
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.1, 1 / 3, 0.7, 3.7, 100.0])
def test_softplus_backward_with_any_beta_and_gradient_wide(dtype, beta):
    check_gradient_with_rounded_products(dtype, beta, 3_000_000)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.1, 1 / 3, 1.0, 3.7, 100.0])
def test_softplus_backward_where_sigmoid_is_subnormal(dtype, beta):
    """Where sigmoid(beta x) is subnormal it has fewer significant bits: the
    error is at most |grad| subnormal spacings plus half an ULP of the
    result (docs/accuracy.md)."""
    rng = np.random.default_rng(7)
    fi = np.finfo(dtype)
    spacing = np.longdouble(fi.smallest_subnormal)
    t = rng.uniform(np.log(fi.smallest_subnormal) - 0.5, np.log(fi.smallest_normal), 200_000)
    x = np.concatenate([(t / beta).astype(dtype), np.array([-874.6291], dtype)])
    grad = (rng.standard_normal(x.size) * rng.choice([1e-3, 0.3, 1.0, 7.0, 1e6], x.size)).astype(dtype)
    grad[-1000:] = 1  # sigmoid itself
    got = fastrelu.softplus_backward(x, grad, beta=beta)
    ref = sigmoid_ld(x, beta) * grad.astype(np.longdouble)
    keep = sigmoid_ld(x, beta) < fi.smallest_normal
    err = np.abs(got.astype(np.longdouble) - ref)[keep]
    magnitude = np.maximum(np.abs(ref[keep]), np.longdouble(fi.smallest_normal))
    result_ulp = np.exp2(np.floor(np.log2(magnitude)) - fi.nmant)
    bound = np.abs(grad[keep]).astype(np.longdouble) * spacing + result_ulp / 2
    worst = int(np.argmax(err / bound))
    alone = grad[keep] == 1
    print(
        f"max error {float(err[worst] / bound[worst]):.3f} of the bound at x={x[keep][worst]!r}; "
        f"sigmoid itself within {float(np.max(err[alone]) / spacing):.2f} subnormal spacings"
    )
    assert err[worst] <= bound[worst], f"x={x[keep][worst]!r}, grad={grad[keep][worst]!r}"


def test_small_beta_holds_above_the_underflow_sliver():
    """With beta < 1 the intermediate log1p(exp(beta*x)) goes subnormal below
    tiny/beta; above that, the bound holds (docs/accuracy.md)."""
    beta = 0.1
    rng = np.random.default_rng(4)
    x = scaled_samples(rng, beta, 1500)
    ref = softplus_mp(x, beta)
    keep = ref >= np.finfo(np.float64).smallest_normal / beta
    err = ulp_error(fastrelu.softplus(x[keep], beta=beta), ref[keep], np.float64)
    assert_within_bound(err, x[keep])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float16_rounds_the_float32_result(dtype):
    x16 = np.arange(-(2**15), 2**15, dtype=np.int32).astype(np.uint16).view(np.float16)
    x16 = x16[np.isfinite(x16)]
    ref = softplus_ld(x16).astype(np.float16)
    got = fastrelu.softplus(x16)
    assert got.dtype == np.float16
    # float32 result rounded to float16: at most one float16 ULP from the
    # correctly rounded value.
    assert ulp_error(got, ref, np.float16).max() <= 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_overflow_at_the_ends_of_the_range(dtype):
    fi = np.finfo(dtype)
    x = np.array([fi.max, -fi.max, fi.smallest_subnormal, -fi.smallest_subnormal], dtype)
    with np.errstate(all="raise"):
        y = fastrelu.softplus(x)
        g = fastrelu.softplus_backward(x, np.ones_like(x))
    np.testing.assert_array_equal(y[:2], [fi.max, 0])
    np.testing.assert_array_equal(g[:2], [1, 0])
    np.testing.assert_allclose(y[2:], np.log(2), rtol=fi.eps)
    np.testing.assert_allclose(g[2:], 0.5, rtol=fi.eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta,threshold", [(1.0, 20.0), (2.0, 5.0), (0.5, 1.0)])
def test_threshold_is_pytorch_parity_mode(dtype, beta, threshold):
    rng = np.random.default_rng(5)
    x = rng.uniform(-50, 50, 20_000).astype(dtype)
    # PyTorch compares x * beta with the threshold in the tensor's dtype.
    linear = x * dtype(beta) > dtype(threshold)
    y = fastrelu.softplus(x, beta=beta, threshold=threshold)
    g = fastrelu.softplus_backward(x, np.full_like(x, 3), beta=beta, threshold=threshold)
    np.testing.assert_array_equal(y[linear], x[linear])
    np.testing.assert_array_equal(g[linear], 3)
    smooth = ~linear
    assert ulp_error(y[smooth], softplus_ld(x[smooth], beta), dtype).max() <= MAX_ULP
    ref = 3 * sigmoid_ld(x[smooth], beta)
    normal = ref >= np.finfo(dtype).smallest_normal
    assert ulp_error(g[smooth][normal], ref[normal], dtype).max() <= MAX_ULP


def test_default_is_exact_where_pytorch_cuts_off():
    """Above PyTorch's cut-off of 20, softplus(x) differs from x by ~exp(-x)."""
    x = np.linspace(20.5, 30, 50)
    y = fastrelu.softplus(x)
    assert np.all(y > x)
    assert ulp_error(y, softplus_ld(x), np.float64).max() <= MAX_ULP
