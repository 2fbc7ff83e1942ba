"""ReLU's backward from its output and from a packed mask: the same bits as
``relu_backward(x, grad, at_zero=...)``, the mask's documented layout, and
every error leaving ``out`` and ``mask_out`` untouched."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastrelu
from fastrelu import ReluMask, config

FLOATS = (np.float16, np.float32, np.float64)
# int32 in the default run; each other dtype compiles its own code, which
# the default run's time budget leaves to -m slow.
INTS = (np.int32, *(pytest.param(t, marks=pytest.mark.slow) for t in (np.int8, np.int64, np.uint16)))
AT_ZERO = (0.0, 0.5, 1.0)
ROOT = Path(__file__).resolve().parents[1]


def reference_bits(x):
    """The documented layout, written independently: codes 0 (x < 0),
    1 (x > 0), 2 (x == 0), 3 (NaN), 4 to a byte along the last axis, element
    j in bits 2*(j % 4) and 2*(j % 4) + 1 of byte j // 4, padding 0."""
    x = np.asarray(x)
    if x.ndim == 0:
        x = x.reshape(1)
    sign = np.sign(x.astype(np.float64))
    codes = np.select([sign > 0, sign < 0], [1, 0], 2)
    if x.dtype.kind == "f":
        codes = np.where(np.isnan(x), 3, codes)
    n = x.shape[-1]
    padded = np.zeros(x.shape[:-1] + (-(-n // 4) * 4,), np.uint8)
    padded[..., :n] = codes
    quads = padded.reshape(x.shape[:-1] + (padded.shape[-1] // 4, 4))
    return (quads[..., 0] | quads[..., 1] << 2 | quads[..., 2] << 4 | quads[..., 3] << 6).astype(np.uint8)


def assert_same_bits(result, expected):
    """Equal bit for bit (signs of zero count), NaN where expected has NaN:
    a NaN from a mask is the default quiet NaN, whatever x's NaN was."""
    result, expected = np.asarray(result), np.asarray(expected)
    assert result.dtype == expected.dtype and result.shape == expected.shape
    if expected.dtype.kind == "f":
        nan = np.isnan(expected)
        np.testing.assert_array_equal(np.isnan(result), nan)
        result, expected = np.where(nan, 0, result), np.where(nan, 0, expected)
        uint = np.dtype(f"u{expected.dtype.itemsize}")
        np.testing.assert_array_equal(result.view(uint), expected.view(uint))
    else:
        np.testing.assert_array_equal(result, expected)


def edge_values(dtype):
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return np.array(
            sorted(
                {info.min, min(-1, info.max), 0, 1, info.max} - {min(-1, info.max)}
                if info.min == 0
                else {info.min, -1, 0, 1, info.max}
            ),
            dtype,
        )
    info = np.finfo(dtype)
    return np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            info.smallest_subnormal,
            -info.smallest_subnormal,
            info.max,
            -info.max,
            1.0,
            -1.0,
        ],
        dtype,
    )


def check(x, grad, at_zero, **kwargs):
    y, mask = fastrelu.relu_with_mask(x)
    assert_same_bits(y, fastrelu.relu(x))
    np.testing.assert_array_equal(mask.bits, reference_bits(x))
    assert mask.shape == np.shape(x) and mask.dtype == np.asarray(x).dtype
    expected = fastrelu.relu_backward(x, grad, at_zero=at_zero)
    assert_same_bits(fastrelu.relu_backward_from_mask(mask, grad, at_zero=at_zero, **kwargs), expected)
    if at_zero == 0:
        np.testing.assert_array_equal(
            np.asarray(fastrelu.relu_backward_from_output(y, grad)).reshape(-1).view(np.uint8),
            np.asarray(expected).reshape(-1).view(np.uint8),
        )


@pytest.mark.parametrize("at_zero", AT_ZERO)
@pytest.mark.parametrize("dtype", FLOATS)
def test_edge_values_in_x_and_grad(dtype, at_zero):
    v = edge_values(dtype)
    x, grad = np.repeat(v, v.size), np.tile(v, v.size)  # every pair
    check(x, grad, at_zero)
    check(x.reshape(v.size, v.size), grad.reshape(v.size, v.size), at_zero)


@pytest.mark.parametrize("dtype", INTS)
def test_integers(dtype):
    v = edge_values(dtype)
    x, grad = np.repeat(v, v.size), np.tile(v, v.size)
    for at_zero in (0, 1):
        check(x, grad, at_zero)
    with pytest.raises(ValueError, match="at_zero"):
        fastrelu.relu_backward_from_mask(fastrelu.relu_with_mask(x)[1], grad, at_zero=0.5)


@pytest.mark.parametrize(
    "x_dtype, grad_dtype",
    [(np.float32, np.float64), (np.float16, np.float32), (np.int32, np.float32), (np.float64, np.int8)],
)
def test_mixed_dtypes_promote_as_relu_backward(x_dtype, grad_dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(37) * 3).astype(x_dtype)
    grad = (rng.standard_normal(37) * 3).astype(grad_dtype)
    for at_zero in (0.0, 1.0):
        check(x, grad, at_zero)
    check(x, 2.5, 0.0)  # a Python float promotes weakly


@pytest.mark.parametrize(
    "shape", [(), (0,), (3, 0), (0, 5), (1,), (3,), (4,), (5,), (7, 13), (2, 3, 9), (6, 8)]
)
def test_shapes_0d_empty_and_rows_of_any_length(shape):
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal(shape)).astype(np.float32)
    grad = rng.standard_normal(shape).astype(np.float32)
    for at_zero in AT_ZERO:
        check(x, grad, at_zero)
    y, mask = fastrelu.relu_with_mask(x)
    assert mask.bits.shape == (shape[:-1] + (-(-shape[-1] // 4),) if shape else (1,))
    if shape == ():
        assert np.isscalar(y) and np.isscalar(fastrelu.relu_backward_from_mask(mask, grad))


def test_layouts_strides_fortran_and_broadcasting():
    rng = np.random.default_rng(3)
    base = np.round(rng.standard_normal((12, 22)) * 2).astype(np.float64)
    gbase = rng.standard_normal((12, 22))
    for x, grad in [
        (base[::2, ::3], gbase[::2, ::3]),
        (base[::-1, ::-2], gbase[::-1, ::-2]),
        (np.asfortranarray(base), np.asfortranarray(gbase)),
        (base, gbase[0]),  # a row, broadcast
        (base, gbase[:, :1]),
        (base, np.float64(1.5)),
        (base.T, gbase.T[::-1]),
    ]:
        for at_zero in AT_ZERO:
            check(x, grad, at_zero)


def test_out_and_in_place():
    rng = np.random.default_rng(4)
    x = np.round(rng.standard_normal((5, 11))).astype(np.float32)
    grad = rng.standard_normal((5, 11)).astype(np.float32)
    expected = fastrelu.relu_backward(x, grad, at_zero=0.5)
    y, mask = fastrelu.relu_with_mask(x)
    out = np.empty_like(grad)
    assert fastrelu.relu_backward_from_mask(mask, grad, out, at_zero=0.5) is out
    assert_same_bits(out, expected)
    g = grad.copy()
    assert fastrelu.relu_backward_from_mask(mask, g, g, at_zero=0.5) is g  # in place into grad
    assert_same_bits(g, expected)
    f = np.empty((11, 5), np.float32).T  # a Fortran-ordered out
    fastrelu.relu_backward_from_mask(mask, grad, f, at_zero=0.5)
    assert_same_bits(f, expected)
    # relu in place, the mask kept in a reused buffer
    x2, bits = x.copy(), np.full(mask.bits.shape, 255, np.uint8)
    y2, mask2 = fastrelu.relu_with_mask(x2, x2, mask_out=bits)
    assert y2 is x2 and mask2.bits is bits
    np.testing.assert_array_equal(bits, mask.bits)
    assert_same_bits(x2, fastrelu.relu(x))
    _, mask3 = fastrelu.relu_with_mask(x, mask_out=mask2)
    assert mask3.bits is bits
    # relu in place, then the backward from the output
    x3 = x.copy()
    fastrelu.relu(x3, out=x3)
    assert_same_bits(fastrelu.relu_backward_from_output(x3, grad), fastrelu.relu_backward(x, grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_and_streaming_stores(dtype):
    """Above the switch-over on two threads, and with outputs past the
    non-temporal store threshold, on arrays whose rows do and do not hold
    a multiple of 4 elements, at offsets that are not line boundaries."""
    rng = np.random.default_rng(5)
    n = 3 * 2**16 + 9
    buffer = np.round(rng.standard_normal(n + 7) * 2).astype(dtype)
    gbuffer = rng.standard_normal(n + 7).astype(dtype)
    with config.set(
        num_threads=2, parallel_min_size={"relu": 64, "relu_backward": 64}, stream_min_bytes=1024
    ):
        for offset in (0, 1, 2, 3):
            x, grad = buffer[offset : offset + n], gbuffer[offset : offset + n]
            out = np.empty(n + 4, dtype)[offset : offset + n]
            for at_zero in (0.0, 0.5):
                check(x, grad, at_zero)
                _, mask = fastrelu.relu_with_mask(x)
                fastrelu.relu_backward_from_mask(mask, grad, out, at_zero=at_zero)
                assert_same_bits(out, fastrelu.relu_backward(x, grad, at_zero=at_zero))
            rows = (x[: 3 * 2**16].reshape(-1, 192)[:, :189], grad[: 3 * 2**16].reshape(-1, 192)[:, :189])
            check(*rows, 0.5)  # rows of 189 elements: a byte of padding each
            check(np.ascontiguousarray(rows[0]), np.ascontiguousarray(rows[1]), 0.5)


@settings(max_examples=30, deadline=None)
@given(
    x=hnp.arrays(
        np.float32, hnp.array_shapes(min_dims=0, max_dims=3, max_side=9), elements=st.floats(width=32)
    ),
    data=st.data(),
    at_zero=st.sampled_from(AT_ZERO),
)
def test_hypothesis_arrays(x, data, at_zero):
    grad = data.draw(hnp.arrays(np.float32, x.shape, elements=st.floats(width=32)))
    check(x, grad, at_zero)


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(
    x=hnp.arrays(
        st.sampled_from([np.float16, np.float32, np.float64]),
        hnp.array_shapes(min_dims=0, max_dims=4, max_side=13),
        elements=st.floats(width=16),
    ),
    data=st.data(),
    at_zero=st.sampled_from(AT_ZERO),
)
def test_hypothesis_arrays_long(x, data, at_zero):
    # Shapes that broadcast to the mask's: a mask does not broadcast.
    shapes = hnp.broadcastable_shapes(x.shape, max_dims=x.ndim).filter(
        lambda shape: np.broadcast_shapes(shape, x.shape) == x.shape
    )
    grad = data.draw(hnp.arrays(np.float64, shapes, elements=st.floats()))
    check(x, grad, at_zero)


def test_from_output_refuses_another_subgradient():
    y, grad = np.zeros(3), np.ones(3)
    out = np.full(3, 7.0)
    for at_zero in (0.5, 1, 1.0):
        with pytest.raises(ValueError, match="cannot be told from"):
            fastrelu.relu_backward_from_output(y, grad, out, at_zero=at_zero)
    with pytest.raises(ValueError, match="at_zero"):
        fastrelu.relu_backward_from_output(y, grad, out, at_zero="no")
    np.testing.assert_array_equal(out, 7.0)
    assert fastrelu.relu_backward_from_output(y, grad, at_zero=0).tolist() == [0.0, 0.0, 0.0]


def test_errors_write_nothing():
    x = np.arange(-4.0, 6.0).reshape(2, 5)
    grad = np.ones((2, 5))
    _, mask = fastrelu.relu_with_mask(x)
    out = np.full((2, 5), 7.0)
    bits = np.full(mask.bits.shape, 9, np.uint8)

    def untouched():
        np.testing.assert_array_equal(out, 7.0)
        np.testing.assert_array_equal(bits, 9)

    bad_backward = [
        (
            ValueError,
            r"grad of shape \(3, 5\) does not broadcast to the mask's shape \(2, 5\)",
            (mask, np.ones((3, 5)), out),
            {},
        ),
        (ValueError, r"\(4, 2, 5\).*\(2, 5\)", (mask, np.ones((4, 2, 5)), out), {}),
        (
            ValueError,
            r"out has shape \(5, 2\), but the result has shape \(2, 5\)",
            (mask, grad, np.full((5, 2), 7.0)),
            {},
        ),
        (TypeError, "out has dtype float32", (mask, grad, np.full((2, 5), 7.0, np.float32)), {}),
        (TypeError, "must be a fastrelu.ReluMask", (x, grad, out), {}),
        (TypeError, "must be a fastrelu.ReluMask", (mask.bits, grad, out), {}),
        (ValueError, "at_zero", (mask, grad, out), {"at_zero": 2.0}),
        (TypeError, "not supported", (mask, grad.astype(bool), out), {}),
    ]
    for error, match, args, kwargs in bad_backward:
        with pytest.raises(error, match=match):
            fastrelu.relu_backward_from_mask(*args, **kwargs)
        untouched()
    bad_forward = [
        (ValueError, r"mask_out has shape \(2, 3\)", {"mask_out": np.zeros((2, 3), np.uint8)}),
        (TypeError, "mask_out has dtype int8", {"mask_out": np.zeros(mask.bits.shape, np.int8)}),
        (TypeError, "mask_out must be a ReluMask", {"mask_out": [[0, 0]]}),
        (ValueError, "out has shape", {"out": np.zeros(10), "mask_out": bits}),
        (TypeError, "out has dtype", {"out": np.zeros((2, 5), np.float32), "mask_out": bits}),
    ]
    readonly = np.zeros(mask.bits.shape, np.uint8)
    readonly.flags.writeable = False
    bad_forward.append((ValueError, "read-only", {"out": out, "mask_out": readonly}))
    for error, match, kwargs in bad_forward:
        with pytest.raises(error, match=match):
            fastrelu.relu_with_mask(x, **kwargs)
        untouched()
    with pytest.raises(ValueError, match="C-contiguous"):
        fastrelu.relu_with_mask(x, out, mask_out=np.zeros((2, 4), np.uint8)[:, ::2])
    untouched()
    with pytest.raises(ValueError, match="shares memory"):
        fastrelu.relu_with_mask(x, out, mask_out=x.view(np.uint8).reshape(-1)[:4].reshape(2, 2))
    untouched()


def test_a_mask_is_tied_to_its_shape():
    with pytest.raises(
        ValueError, match=r"bits has shape \(2, 2\), but a mask of shape \(2, 9\) packs into \(2, 3\)"
    ):
        ReluMask(np.zeros((2, 2), np.uint8), (2, 9), np.float32)
    with pytest.raises(TypeError, match="uint8"):
        ReluMask(np.zeros((2, 3), np.int16), (2, 9), np.float32)
    with pytest.raises(TypeError, match="that of x"):
        ReluMask(np.zeros((2, 3), np.uint8), (2, 9), np.complex64)
    mask = ReluMask(np.zeros((2, 3), np.uint8), (2, 9), np.float32)
    assert (mask.nbytes, mask.packed_shape) == (6, (2, 3))
    assert repr(mask) == "ReluMask(shape=(2, 9), dtype=float32, 6 bytes)"


@pytest.mark.parametrize("chunks", [(3, 5), (6, 8), (2, 23), (4, 4), (5, 7)])
def test_dask_matches_numpy(chunks):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(6)
    x = np.round(rng.standard_normal((6, 23)) * 2).astype(np.float32)
    x[0, :3] = np.nan
    grad = rng.standard_normal((6, 23)).astype(np.float32)
    y0, mask0 = fastrelu.relu_with_mask(x)
    y, mask = fastrelu.relu_with_mask(da.from_array(x, chunks=chunks))
    assert all(c % 4 == 0 for c in y.chunks[-1][:-1]) or y.chunks[-1] == (23,)
    assert_same_bits(y.compute(), y0)
    np.testing.assert_array_equal(mask.bits.compute(), mask0.bits)
    for g in (da.from_array(grad, chunks=(4, 9)), grad, grad[0], 2.0):
        for at_zero in AT_ZERO:
            result = fastrelu.relu_backward_from_mask(mask, g, at_zero=at_zero)
            assert_same_bits(
                result.compute(), fastrelu.relu_backward(x, np.asarray(g, np.float32), at_zero=at_zero)
            )
    assert_same_bits(
        fastrelu.relu_backward_from_mask(mask0, da.from_array(grad, chunks=3)).compute(),
        fastrelu.relu_backward(x, grad),
    )
    assert_same_bits(
        fastrelu.relu_backward_from_output(da.from_array(y0, chunks=chunks), grad).compute(),
        fastrelu.relu_backward(x, grad),
    )
    with pytest.raises(TypeError, match="out= and mask_out="):
        fastrelu.relu_with_mask(da.from_array(x), mask_out=mask0)
    with pytest.raises(ValueError, match="at_zero"):
        fastrelu.relu_backward_from_mask(mask, grad, at_zero=3)


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?%?(?!\w|\.\d)")


def _forms(text):
    """The distinct lines of *text* with their numbers masked: the form of
    what bench/mask.py prints, whatever it measured."""
    return {" ".join(_NUMBER.sub("#", line).split()) for line in text.splitlines() if line.strip()}


def test_the_kept_mask_record_has_the_form_bench_mask_prints():
    """docs/data/mask.txt keeps what `python bench/mask.py` printed; a quick
    run on small arrays prints lines of the same forms."""
    kept = (ROOT / "docs" / "data" / "mask.txt").read_text().splitlines(keepends=True)
    assert kept[0] == "$ python bench/mask.py\n"
    proc = subprocess.run(
        [sys.executable, "bench/mask.py", "--small"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert _forms(proc.stdout) == _forms("".join(kept[1:]))
