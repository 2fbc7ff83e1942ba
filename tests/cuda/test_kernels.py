"""The GPU path end to end, on a GPU or in Numba's CUDA simulator, against
the CPU path on the same data.

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda

In the simulator, device memory is host memory and the kernels run the
formulas as plain Python: this checks dispatch, indexing, layouts and
errors; the numerics are checked on the CPU and, for the GPU's code
generation, by ``test_ptx.py``.
"""

import numpy as np
import pytest
from numba import config, cuda

import fastrelu
from fastrelu import _cuda

if not (config.ENABLE_CUDASIM or cuda.is_available()):
    pytest.skip("neither a GPU nor NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3e38, -3e38, 88.0, -104.0, 20.0]
FUNCS = {
    "relu": lambda x, g, **kw: fastrelu.relu(x, **kw),
    "relu_backward": lambda x, g, **kw: fastrelu.relu_backward(x, g, at_zero=0.5, **kw),
    "softplus": lambda x, g, **kw: fastrelu.softplus(x, beta=3.7, **kw),
    "softplus_backward": lambda x, g, **kw: fastrelu.softplus_backward(x, g, **kw),
}


def data(dtype, shape=(37, 24), seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 40).astype(dtype)
    with np.errstate(over="ignore"):  # float16 holds 3e38 as inf
        x.flat[: len(EDGES)] = np.array(EDGES).astype(dtype)
    return x, rng.standard_normal(shape).astype(dtype)


def host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def assert_matches_cpu(got, want):
    """Bit for bit, or within 2 ULP where the GPU fuses multiply-adds the
    CPU path (here the plain-Python formulas) rounds separately."""
    got, want = host(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    if want.dtype.kind == "f":
        with np.errstate(invalid="ignore"):  # no spacing at inf; those compare equal above
            spacing = np.spacing(np.abs(want))
            same |= np.abs(got.astype(np.float64) - want) <= 2 * spacing
    assert same.all(), (got[~same][:5], want[~same][:5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("name", list(FUNCS))
def test_device_arrays_match_the_cpu(name, dtype):
    x, g = data(dtype)
    got = FUNCS[name](cuda.to_device(x), cuda.to_device(g))
    assert type(got) is type(cuda.to_device(x))
    assert_matches_cpu(got, FUNCS[name](x, g))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("name", list(FUNCS))
def test_16_byte_accesses_every_tail_and_misaligned_views(name, dtype, monkeypatch):
    """Aligned operands of one dtype are accessed 16 bytes at a time, with
    the last n % width elements one by one; a view that starts off a
    16-byte boundary falls back to element by element."""
    widths = []
    access_width = _cuda.access_width
    monkeypatch.setattr(_cuda, "access_width", lambda *a: widths.append(access_width(*a)) or widths[-1])
    width = 16 // np.dtype(dtype).itemsize
    for n in (1, width - 1, width, width + 1, 3 * width + 5, 64 * width + 3):
        x, g = data(dtype, (n + 1,), seed=n)
        dx, dg = cuda.to_device(x), cuda.to_device(g)
        assert_matches_cpu(FUNCS[name](dx[:n], dg[:n]), FUNCS[name](x[:n], g[:n]))
        assert_matches_cpu(FUNCS[name](dx[1:], dg[1:]), FUNCS[name](x[1:], g[1:]))
    assert widths == [width, 1] * 6


def test_integer_relu_keeps_its_dtype():
    x = np.arange(-5, 5, dtype=np.int16)
    assert_matches_cpu(fastrelu.relu(cuda.to_device(x)), fastrelu.relu(x))


@pytest.mark.parametrize("name", list(FUNCS))
def test_layouts_broadcasting_and_scalars(name):
    x, g = data(np.float32, (12, 10))
    dx, dg = cuda.to_device(x), cuda.to_device(g)
    cases = [
        (dx[:, ::2], dg[:, ::2], x[:, ::2], g[:, ::2]),  # strided
        (dx[::-1], dg[::-1], x[::-1], g[::-1]),  # negative strides
        (dx, cuda.to_device(g[0]), x, g[0]),  # broadcast
        (dx, 1.5, x, 1.5),  # a host scalar grad goes with device arrays
        (dx[3, 4], dg[3, 4], x[3, 4], g[3, 4]),  # 0-d
    ]
    for dxc, dgc, xc, gc in cases:
        assert_matches_cpu(FUNCS[name](dxc, dgc), FUNCS[name](xc, gc))


@pytest.mark.parametrize("name", list(FUNCS))
def test_out_on_the_device(name):
    x, g = data(np.float32)
    want = FUNCS[name](x, g)
    for out in (cuda.device_array_like(x), cuda.device_array((x.shape[0], 2 * x.shape[1]), x.dtype)[:, ::2]):
        assert FUNCS[name](cuda.to_device(x), cuda.to_device(g), out=out) is out
        assert_matches_cpu(out, want)
    dx = cuda.to_device(x)
    FUNCS[name](dx, cuda.to_device(g), out=dx)  # in place
    assert_matches_cpu(dx, want)


def test_out_overlapping_an_input_partially():
    x = np.linspace(-3, 3, 50).astype(np.float32)
    d = cuda.to_device(x)
    fastrelu.softplus(d[:-1], out=d[1:])
    want = x.copy()
    fastrelu.softplus(want[:-1], out=want[1:])
    assert_matches_cpu(d, want)


def test_errors_leave_out_untouched():
    x, g = data(np.float32)
    out = cuda.to_device(np.full(x.shape, 7.0, np.float32))
    dx = cuda.to_device(x)
    with pytest.raises(TypeError, match="dtype float64"):
        fastrelu.relu(dx, out=cuda.device_array(x.shape, np.float64))
    with pytest.raises(ValueError, match="shape"):
        fastrelu.relu(dx, out=cuda.device_array((3,), np.float32))
    with pytest.raises(TypeError, match="on the host"):
        fastrelu.relu_backward(dx, g, out=out)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        fastrelu.relu_backward(dx, cuda.to_device(g[:, :3].copy()), out=out)
    with pytest.raises(ValueError, match="at_zero"):
        fastrelu.relu_backward(dx, cuda.to_device(g), out=out, at_zero=2.0)
    with pytest.raises(TypeError, match="device='cpu'"):
        fastrelu.relu(dx, out=out, device="cpu")
    with pytest.raises(TypeError, match="not supported"):
        fastrelu.relu(cuda.to_device(np.ones(3, np.complex64)))
    assert (host(out) == 7.0).all()


def test_device_cuda_with_host_arrays_returns_host_arrays():
    x, g = data(np.float64)
    got = fastrelu.softplus_backward(x, g, device="cuda")
    assert isinstance(got, np.ndarray)
    assert_matches_cpu(got, fastrelu.softplus_backward(x, g))
    out = np.empty_like(x)
    assert fastrelu.relu(x, out=out, device="cuda") is out
    assert_matches_cpu(out, fastrelu.relu(x))
    scalar = fastrelu.softplus(np.float32(3.0), device="cuda")
    assert scalar == fastrelu.softplus(np.float32(3.0)) and type(scalar) is np.float32


def test_on_a_stream():
    x, g = data(np.float32)
    stream = cuda.stream()
    dx, dg = cuda.to_device(x, stream=stream), cuda.to_device(g, stream=stream)
    got = fastrelu.softplus_backward(dx, dg, stream=stream)
    stream.synchronize()
    assert_matches_cpu(got, fastrelu.softplus_backward(x, g))


def test_cuda_available_is_quiet(capsys):
    assert fastrelu.cuda_available() is True
    assert capsys.readouterr() == ("", "")
