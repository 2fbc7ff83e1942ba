"""Dask arrays whose blocks live on the GPU (CuPy's, or here Numba's device
arrays) run the GPU kernels block by block and give GPU blocks back."""

import numpy as np
import pytest
from numba import config, cuda

import fastrelu

da = pytest.importorskip("dask.array")

if not (config.ENABLE_CUDASIM or cuda.is_available()):
    pytest.skip("neither a GPU nor NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)


def on_device(a, chunks):
    """A Dask array of device blocks made from NumPy array *a*."""
    meta = cuda.to_device(np.empty((0,) * a.ndim, a.dtype))
    return da.from_array(a, chunks=chunks).map_blocks(
        lambda b: cuda.to_device(np.ascontiguousarray(b)), meta=meta
    )


def to_host(lazy):
    return lazy.map_blocks(lambda b: b.copy_to_host(), meta=np.empty((0,) * lazy.ndim, lazy.dtype))


def test_device_blocks_run_on_the_gpu():
    rng = np.random.default_rng()
    x = (rng.standard_normal((20, 30)) * 30).astype(np.float32)
    x.flat[::7] = 0
    g = rng.standard_normal((20, 30)).astype(np.float32)
    # One chunking: Dask rechunks by concatenating blocks, which it can do
    # for CuPy's but not for the simulator's device arrays.
    dx, dg = on_device(x, (7, 11)), on_device(g, (7, 11))
    calls = {
        "relu": (lambda a, b: fastrelu.relu(a)),
        "relu_backward": (lambda a, b: fastrelu.relu_backward(a, b, at_zero=0.5)),
        "softplus": (lambda a, b: fastrelu.softplus(a, beta=2.0, threshold=20.0)),
        "softplus_backward": (lambda a, b: fastrelu.softplus_backward(a, b)),
    }
    for name, call in calls.items():
        lazy = call(dx, dg)
        assert type(lazy._meta) is type(dx._meta), name  # device blocks out
        got = to_host(lazy).compute(scheduler="sync")
        want = call(x, g)
        assert got.dtype == want.dtype
        # As tests/cuda/test_kernels.py: bit for bit, or 2 ULP where multiply-adds fuse.
        np.testing.assert_array_max_ulp(got, want, maxulp=2)


def test_host_and_device_blocks_in_one_call_are_refused():
    x = np.linspace(-1, 1, 30, dtype=np.float32)
    dx = on_device(x, 10)
    with pytest.raises(TypeError, match="x on the GPU and grad on the host"):
        fastrelu.relu_backward(dx, da.from_array(x, chunks=10))
    with pytest.raises(TypeError, match="device='cpu', but x is on the GPU"):
        fastrelu.relu(dx, device="cpu")
