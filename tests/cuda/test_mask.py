"""ReLU masks on the GPU, on a GPU or in Numba's CUDA simulator: the same
bits and results as the CPU path, on device arrays and with
``device="cuda"`` for host arrays.

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda
"""

import numpy as np
import pytest
from numba import config, cuda

import fastrelu

if not (config.ENABLE_CUDASIM or cuda.is_available()):
    pytest.skip("neither a GPU nor NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)


def same(got, want):
    got = got.copy_to_host() if hasattr(got, "copy_to_host") else np.asarray(got)
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.kind == "f":
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        uint = f"u{want.dtype.itemsize}"
        np.testing.assert_array_equal(
            np.where(np.isnan(want), 0, got).view(uint), np.where(np.isnan(want), 0, want).view(uint)
        )
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int32])
@pytest.mark.parametrize("shape", [(7,), (3, 9), (), (0, 3)])
def test_device_masks_match_the_cpu(dtype, shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).round().astype(dtype)
    if x.ndim and dtype != np.int32:
        x.ravel()[::5] = np.nan
        x.ravel()[1::7] = -0.0
    grad = rng.standard_normal(shape).astype(dtype)
    y0, mask0 = fastrelu.relu_with_mask(x)
    y, mask = fastrelu.relu_with_mask(cuda.to_device(x))
    same(y, y0)
    same(mask.bits, mask0.bits)
    assert (mask.shape, mask.dtype) == (mask0.shape, mask0.dtype)
    for at_zero in (0.0, 1.0) if dtype == np.int32 else (0.0, 0.5, 1.0):
        want = fastrelu.relu_backward_from_mask(mask0, grad, at_zero=at_zero)
        same(fastrelu.relu_backward_from_mask(mask, cuda.to_device(grad), at_zero=at_zero), want)


def test_strided_broadcast_out_mask_out_and_host_calls():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 10)).round().astype(np.float32)
    grad = rng.standard_normal((6, 10)).astype(np.float32)
    y0, mask0 = fastrelu.relu_with_mask(x)
    want = fastrelu.relu_backward_from_mask(mask0, grad, at_zero=0.5)
    dx = cuda.to_device(x)
    out, bits = cuda.device_array((6, 10), np.float32), cuda.device_array((6, 3), np.uint8)
    y, mask = fastrelu.relu_with_mask(dx, out, mask_out=bits)
    assert y is out and mask.bits is bits
    same(bits, mask0.bits)
    same(
        fastrelu.relu_backward_from_mask(mask, cuda.to_device(grad[0]), at_zero=0.5),
        fastrelu.relu_backward_from_mask(mask0, grad[0], at_zero=0.5),
    )
    strided = cuda.to_device(np.ascontiguousarray(grad[:, ::-1]))[:, ::-1]
    same(fastrelu.relu_backward_from_mask(mask, strided, at_zero=0.5), want)
    same(fastrelu.relu_backward_from_mask(mask, 2.0), fastrelu.relu_backward_from_mask(mask0, 2.0))
    yh, maskh = fastrelu.relu_with_mask(x, device="cuda")
    assert isinstance(yh, np.ndarray) and isinstance(maskh.bits, np.ndarray)
    same(maskh.bits, mask0.bits)
    same(fastrelu.relu_backward_from_mask(maskh, grad, device="cuda", at_zero=0.5), want)
    same(fastrelu.relu_backward_from_output(dx, cuda.to_device(grad)), fastrelu.relu_backward(x, grad))


def test_errors_leave_device_arrays_untouched():
    x = cuda.to_device(np.arange(-4.0, 6.0, dtype=np.float32).reshape(2, 5))
    _, mask = fastrelu.relu_with_mask(x)
    out = cuda.to_device(np.full((2, 5), 7.0, np.float32))
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(2, 5\)"):
        fastrelu.relu_backward_from_mask(mask, cuda.to_device(np.ones((3, 5), np.float32)), out)
    with pytest.raises(TypeError, match="on the host"):
        fastrelu.relu_backward_from_mask(mask, np.ones((2, 5), np.float32), out)
    with pytest.raises(ValueError, match="mask_out has shape"):
        fastrelu.relu_with_mask(x, out, mask_out=cuda.device_array((2, 1), np.uint8))
    np.testing.assert_array_equal(out.copy_to_host(), 7.0)
