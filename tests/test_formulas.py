"""The scalar formulas run as plain Python too (as Numba's CUDA simulator runs
them), and agree there with the independent references."""

import math

import numpy as np
import pytest
from reference import sigmoid_ld, softplus_ld, ulp_error

from fastrelu import _formulas as f

X = [-800.0, -30.0, -1.5, -1e-300, -0.0, 0.0, 5e-324, 0.25, 3.0, 40.0, 1e308, math.inf, -math.inf]


@pytest.mark.parametrize("x", X)
def test_relu_and_its_gradient(x):
    assert f.relu(x) == max(x, 0.0) and math.copysign(1, f.relu(x)) == 1
    for at_zero in (0.0, 0.5, 1.0):
        expected = 2.0 if x > 0 else (at_zero * 2.0 if x == 0 else 0.0)
        assert f.relu_grad(x, 2.0, at_zero) == expected
    assert f.relu_grad(x, math.nan, 0.0) == 0.0 or x > 0


def test_nan_stays_nan():
    assert math.isnan(f.relu(math.nan))
    assert math.isnan(f.relu_grad(math.nan, 1.0, 0.0))
    assert math.isnan(f.softplus(math.nan, 1.0, 0.0, math.inf))
    assert math.isnan(f.softplus_grad(math.nan, 1.0, 1.0, 0.0, math.inf))


@pytest.mark.parametrize("beta", [1.0, 0.5, 3.7])
def test_softplus_and_sigmoid_within_bound(beta):
    xs = np.array([x / beta for x in X if math.isfinite(x / beta)])
    with np.errstate(invalid="ignore", over="ignore"):  # the split of +-inf, discarded
        sp = np.array([f.softplus(x, beta, 0.0, math.inf) for x in xs])
        sg = np.array([f.softplus_grad(x, 1.0, beta, 0.0, math.inf) for x in xs])
    assert ulp_error(sp, softplus_ld(xs, beta), np.float64).max() <= 4
    ref = sigmoid_ld(xs, beta)
    normal = ref >= np.finfo(np.float64).smallest_normal
    assert ulp_error(sg[normal], ref[normal], np.float64).max() <= 4


def test_scaled_product_carries_the_rounding_error():
    """t + c is the exact product beta * x (away from overflow and underflow)."""
    from fractions import Fraction

    rng = np.random.default_rng(7)
    for beta, x in zip(rng.uniform(0.1, 10, 200), rng.uniform(-1000, 1000, 200)):
        t, c = f.scaled(x, beta, 0.0)
        exact = Fraction(beta) * Fraction(x)
        assert t == float(exact)  # t is the rounded product
        assert Fraction(t) + Fraction(c) == exact  # Dekker's product is exact
