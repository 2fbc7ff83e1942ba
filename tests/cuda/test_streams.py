"""Which GPU, which stream and whose memory: the rules of the GPU path,
checked with stand-ins for other libraries' arrays, streams and allocators.

The rules themselves (``stream_handle``, ``plan_streams``,
``common_device``) need neither a GPU nor the simulator; the end-to-end
cases run in the simulator, whose "device" memory is host memory, so a
stand-in array is a NumPy array behind a CUDA array interface.
"""

import contextlib
import sys
import types

import numpy as np
import pytest
from numba import config

import fastrelu
from fastrelu import _cuda, _device
from fastrelu._cuda import LEGACY_DEFAULT, PER_THREAD_DEFAULT, common_device, plan_streams, stream_handle
from fastrelu._device import DeviceOperand

simulator = pytest.mark.skipif(not config.ENABLE_CUDASIM, reason="stand-in arrays hold host memory")


class Interface:
    """An array of another library: a CUDA array interface over a NumPy
    array's memory, naming *stream* (version 3) or nothing (version 2)."""

    def __init__(self, host, stream=None, version=3):
        self.host = host
        self.__cuda_array_interface__ = {
            "shape": host.shape,
            "typestr": host.dtype.str,
            "data": (host.ctypes.data, False),
            "strides": host.strides,
            "version": version,
        }
        if version >= 3:
            self.__cuda_array_interface__["stream"] = stream


def operand(stream=None, version=3, host=None):
    return DeviceOperand(Interface(np.zeros(3, np.float32) if host is None else host, stream, version))


class CupyStream:
    def __init__(self, ptr):
        self.ptr = ptr


class TorchStream:
    def __init__(self, cuda_stream):
        self.cuda_stream = cuda_stream


class CoreStream:
    def __init__(self, handle):
        self.handle = handle

    def __cuda_stream__(self):
        return (0, self.handle)


@pytest.mark.parametrize("kind", [CupyStream, TorchStream, CoreStream])
def test_a_stream_handle_of_0_is_the_legacy_default_stream(kind):
    assert stream_handle(kind(0)) == LEGACY_DEFAULT
    assert stream_handle(kind(LEGACY_DEFAULT)) == LEGACY_DEFAULT
    assert stream_handle(kind(PER_THREAD_DEFAULT)) == PER_THREAD_DEFAULT
    assert stream_handle(kind(0x7F00_1234)) == 0x7F00_1234


def test_a_stream_must_be_a_stream():
    with pytest.raises(TypeError, match="stream must be a Numba, CuPy or PyTorch CUDA stream, got str"):
        stream_handle("default")


def test_the_producers_stream_is_the_launch_stream():
    x, g = operand(stream=0x500), operand(stream=0x700)
    assert plan_streams(None, {"x": x, "grad": g}) == (0x500, [0x700], False)
    assert plan_streams(None, {"x": x, "grad": operand(stream=0x500)}) == (0x500, [], False)
    # stream= decides; every other stream named is waited for, once.
    out = operand(stream=0x700)
    assert plan_streams(CupyStream(0x900), {"x": x, "grad": g, "out": out}) == (0x900, [0x500, 0x700], False)
    assert plan_streams(CupyStream(0x500), {"x": x}) == (0x500, [], False)


def test_no_stream_named_means_the_legacy_default_stream():
    plain = {"x": operand(stream=None), "grad": operand(version=2)}
    assert plan_streams(None, plain) == (LEGACY_DEFAULT, [], False)
    # A Numba array bound to the default stream exports 0: the legacy stream.
    assert plan_streams(None, {"x": operand(stream=0)}) == (LEGACY_DEFAULT, [], False)
    both = {"x": operand(stream=0), "grad": operand(stream=1)}
    assert plan_streams(None, both) == (LEGACY_DEFAULT, [], False)
    assert plan_streams(TorchStream(0), {"x": operand(stream=PER_THREAD_DEFAULT)}) == (
        LEGACY_DEFAULT,
        [PER_THREAD_DEFAULT],
        False,
    )


def test_a_bad_stream_entry_names_its_operand():
    with pytest.raises(TypeError, match=r"grad: the stream entry .* must be an integer or None, got '5'"):
        plan_streams(None, {"x": operand(stream=5), "grad": operand(stream="5")})


class _Device:
    def __init__(self, index):
        self.index = self.id = index


def on_gpu(index, host=None, kind="cupy"):
    """A stand-in CuPy array on GPU *index*."""
    cls = type("ndarray", (Interface,), {"__module__": f"{kind}._core"})
    array = cls(np.zeros(3, np.float32) if host is None else host, stream=LEGACY_DEFAULT)
    array.device, array.is_cuda = _Device(index), True
    return array


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine of two GPUs, as far as the rules are concerned (with one,
    every array is on it, and they are not consulted)."""
    monkeypatch.setattr(_device, "gpu_count", lambda: 2)


def test_with_one_gpu_devices_are_not_consulted(monkeypatch):
    monkeypatch.setattr(_device, "gpu_count", lambda: 1)
    assert common_device({"x": DeviceOperand(on_gpu(0)), "out": DeviceOperand(on_gpu(1))}) is None


def test_operands_on_two_gpus_are_an_error(two_gpus):
    named = {"x": DeviceOperand(on_gpu(0)), "grad": DeviceOperand(on_gpu(0)), "out": DeviceOperand(on_gpu(1))}
    with pytest.raises(ValueError, match="x is on GPU 0 and out on GPU 1"):
        common_device(named)
    assert common_device({"x": DeviceOperand(on_gpu(1)), "grad": DeviceOperand(on_gpu(1))}) == 1


def test_operands_on_two_gpus_leave_out_untouched(two_gpus):
    out = on_gpu(1, np.full(3, 7.0, np.float32))
    with pytest.raises(ValueError, match="x is on GPU 0 and out on GPU 1"):
        fastrelu.relu(on_gpu(0), out=out)
    with pytest.raises(ValueError, match="x is on GPU 2 and grad on GPU 3"):
        fastrelu.relu_backward(on_gpu(2), on_gpu(3))
    assert (out.host == 7.0).all()


# End to end in the simulator: launches, waits and allocations, recorded.


@simulator
def test_any_array_with_the_interface():
    rng = np.random.default_rng(4)
    x, g = rng.standard_normal((2, 37, 24)).astype(np.float32)
    got = fastrelu.relu_backward(Interface(x, version=2), Interface(g))
    np.testing.assert_array_equal(got.copy_to_host(), fastrelu.relu_backward(x, g))
    out = np.zeros_like(x)
    fastrelu.relu(Interface(x), out=Interface(out))
    np.testing.assert_array_equal(out, fastrelu.relu(x))


@pytest.fixture
def recorded(monkeypatch):
    """The streams the GPU path launches on and the waits it enqueues."""
    log = {"streams": [], "waits": []}

    def numba_stream(handle, device):
        log["streams"].append(handle)
        return _cuda.cuda.default_stream()

    monkeypatch.setattr(_cuda, "numba_stream", numba_stream)
    monkeypatch.setattr(_cuda, "wait_for", lambda waits, stream, device: log["waits"].append(list(waits)))
    return log


@simulator
def test_a_call_waits_for_each_producer_on_the_gpu(recorded):
    rng = np.random.default_rng(1)
    x, g = rng.standard_normal((2, 40)).astype(np.float32)
    got = fastrelu.relu_backward(Interface(x, stream=0x500), Interface(g, stream=0x700), at_zero=0.5)
    assert recorded == {"streams": [0x500], "waits": [[0x700]]}
    np.testing.assert_array_equal(got.copy_to_host(), fastrelu.relu_backward(x, g, at_zero=0.5))


@simulator
def test_the_callers_stream_wins(recorded):
    x = np.linspace(-2, 2, 33, dtype=np.float32)
    out = np.zeros_like(x)
    fastrelu.softplus(Interface(x, stream=0x500), out=Interface(out, version=2), stream=CupyStream(0))
    assert recorded == {"streams": [LEGACY_DEFAULT], "waits": [[0x500]]}
    np.testing.assert_array_equal(out, fastrelu.softplus(x))


class Library:
    """A stand-in module for CuPy or PyTorch: arrays in host memory, and a
    log of what was allocated on which device and stream."""

    def __init__(self, kind, current_stream=0):
        self.kind, self.log, self.current = kind, [], current_stream
        self.in_stream = None

    def array(self, host, device=0):
        torch = self.kind == "torch"
        cls = type("Tensor" if torch else "ndarray", (Interface,), {"__module__": f"{self.kind}._x"})
        array = cls(host, stream=None if torch else LEGACY_DEFAULT, version=2 if torch else 3)
        array.device, array.is_cuda = _Device(device), True
        if self.kind == "torch":  # read through the CUDA array interface, as tensors that need grad are
            array.requires_grad = True
        return array

    def empty(self, shape, dtype, device=None):
        index = device.index if self.kind == "torch" else self.device
        self.log.append((tuple(shape), np.dtype(dtype), index, self.in_stream))
        return self.array(np.zeros(shape, dtype), index)

    @contextlib.contextmanager
    def stream_context(self, handle):
        self.in_stream = handle
        yield
        self.in_stream = None


def fake_cupy(lib):
    @contextlib.contextmanager
    def device(index=None):
        previous = getattr(lib, "device", 0)
        lib.device = previous if index is None else index
        yield
        lib.device = previous

    class Device:
        def __init__(self, index=None):
            self.index = index
            self.id = getattr(lib, "device", 0) if index is None else index

        def __enter__(self):
            self.cm = device(self.index)
            self.cm.__enter__()

        def __exit__(self, *exc):
            self.cm.__exit__(*exc)

    cuda = types.SimpleNamespace(
        Device=Device,
        get_current_stream=lambda: CupyStream(lib.current),
        ExternalStream=lambda handle, device_id: lib.stream_context(handle),
    )
    return types.SimpleNamespace(cuda=cuda, empty=lambda shape, dtype: lib.empty(shape, dtype))


def fake_torch(lib):
    class Stream(TorchStream):
        device = _Device(0)

    cuda = types.SimpleNamespace(
        current_stream=lambda device=None: Stream(lib.current),
        stream=lambda s: s,
        ExternalStream=lambda handle, device: lib.stream_context(handle),
    )
    return types.SimpleNamespace(
        cuda=cuda,
        device=lambda kind, index=None: _Device(index),
        empty=lambda shape, dtype, device: lib.empty(shape, dtype, device),
        from_numpy=lambda a: types.SimpleNamespace(dtype=a.dtype),
    )


@pytest.fixture(params=["cupy", "torch"])
def library(request, monkeypatch, recorded, two_gpus):
    lib = Library(request.param)
    make = fake_cupy if request.param == "cupy" else fake_torch
    monkeypatch.setitem(sys.modules, request.param, make(lib))
    monkeypatch.setattr(_cuda, "on_device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(_device, "_torch_dtypes", {})  # the stand-in's dtypes are NumPy's
    return lib


@simulator
def test_results_and_temporaries_come_from_the_callers_library(library):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 10)).astype(np.float32)
    got = fastrelu.relu(library.array(x, device=1))
    assert type(got).__module__.startswith(library.kind)
    np.testing.assert_array_equal(got.host, fastrelu.relu(x))
    assert library.log == [((6, 10), np.dtype(np.float32), 1, None)]

    # A strided input is gathered, a host scalar filled in, into temporaries
    # of the same library.
    for grad in (library.array(x[:, ::2], device=1), 1.5):
        library.log.clear()
        got = fastrelu.relu_backward(library.array(x[:, 1::2], device=1), grad, at_zero=0.5)
        want = fastrelu.relu_backward(x[:, 1::2], x[:, ::2] if grad != 1.5 else grad, at_zero=0.5)
        np.testing.assert_array_equal(got.host, want)
        assert library.log == [((6, 5), np.dtype(np.float32), 1, None)] * 3


@simulator
def test_memory_for_another_stream_is_allocated_for_that_stream(library):
    x = np.linspace(-1, 1, 20, dtype=np.float16)
    got = fastrelu.relu(library.array(x), stream=TorchStream(0x900))
    np.testing.assert_array_equal(got.host, fastrelu.relu(x))
    assert library.log == [((20,), np.dtype(np.float16), 0, 0x900)]
    # On the library's current stream it allocates as usual.
    library.log.clear()
    fastrelu.relu(library.array(x), stream=TorchStream(library.current))
    assert library.log == [((20,), np.dtype(np.float16), 0, None)]


@simulator
def test_pytorch_tensors_run_on_pytorchs_current_stream(monkeypatch, recorded, two_gpus):
    lib = Library("torch", current_stream=0x321)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(lib))
    monkeypatch.setattr(_device, "_torch_dtypes", {})
    x = np.linspace(-1, 1, 9, dtype=np.float32)
    fastrelu.relu(lib.array(x))
    assert recorded["streams"] == [0x321]
    assert lib.log == [((9,), np.dtype(np.float32), 0, None)]


@simulator
def test_numba_arrays_keep_numba_allocation(recorded):
    from numba import cuda

    x = np.linspace(-1, 1, 9, dtype=np.float32)
    got = fastrelu.relu(cuda.to_device(x))
    assert type(got) is type(cuda.to_device(x))
    assert recorded["streams"] == [LEGACY_DEFAULT]


# On a real GPU, with the libraries themselves.

real_gpu = pytest.mark.skipif(
    config.ENABLE_CUDASIM or not fastrelu.cuda_available(), reason="needs a CUDA GPU"
)


def _torch_cuda():
    try:
        import torch
    except ImportError:
        pytest.skip("needs PyTorch")
    if not torch.cuda.is_available() or not hasattr(torch.cuda, "_sleep"):
        pytest.skip("needs PyTorch with CUDA")
    return torch


def _written_late():
    """PyTorch, a side stream, a tensor that stream writes after a wait of
    some milliseconds, and (on the host) the values it will then hold."""
    torch = _torch_cuda()
    side = torch.cuda.Stream()
    src = torch.randn(1 << 22, device="cuda")
    late = torch.zeros_like(src)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)
        late.copy_(src)
    return torch, side, late, src.cpu().numpy()


@real_gpu
def test_pytorch_work_on_its_current_stream():
    torch, side, y, values = _written_late()
    with torch.cuda.stream(side):
        got = fastrelu.relu(y)  # queued after the copy, on the same stream
    side.synchronize()
    np.testing.assert_array_equal(got.cpu().numpy(), fastrelu.relu(values))
    assert got.device == y.device and isinstance(got, torch.Tensor)


@real_gpu
def test_a_producers_stream_is_waited_for():
    from numba import cuda

    torch, side, g, values = _written_late()
    # A Numba view of g that names the stream g is being written on.
    g_numba = cuda.as_cuda_array(g, sync=False).bind(cuda.external_stream(side.cuda_stream))
    x_host = np.random.default_rng(3).standard_normal(values.size).astype(np.float32)
    mine = cuda.stream()
    got = fastrelu.relu_backward(cuda.to_device(x_host), g_numba, stream=mine)
    mine.synchronize()
    np.testing.assert_array_equal(got.copy_to_host(), fastrelu.relu_backward(x_host, values))
    torch.cuda.synchronize()


@real_gpu
def test_pytorch_results_come_from_its_caching_allocator():
    torch = _torch_cuda()
    x = torch.randn(1 << 20, device="cuda")
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    y = fastrelu.softplus(x)
    assert torch.cuda.memory_allocated() - before >= x.numel() * x.element_size()
    strided = fastrelu.relu_backward(x[::2], 1.0)
    assert isinstance(strided, torch.Tensor) and strided.shape == x[::2].shape
    np.testing.assert_allclose(y.cpu().numpy(), fastrelu.softplus(x.cpu().numpy()), rtol=1e-6)


@real_gpu
def test_cupy_on_a_stream_of_its_own():
    try:
        import cupy
    except Exception:
        pytest.skip("needs CuPy")
    x = cupy.random.standard_normal(1 << 20, dtype=cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        y = fastrelu.relu(cupy.maximum(x, -0.5))  # both on the stream
    stream.synchronize()
    assert isinstance(y, cupy.ndarray)
    np.testing.assert_array_equal(y.get(), fastrelu.relu(np.maximum(x.get(), -0.5)))


@real_gpu
def test_a_tensor_on_another_gpu_is_computed_there():
    torch = _torch_cuda()
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    x = torch.randn(1000, device="cuda:1")
    y = fastrelu.softplus_backward(x, torch.ones_like(x))
    assert y.device == x.device
    torch.cuda.synchronize(1)
    np.testing.assert_allclose(y.cpu().numpy(), fastrelu.softplus_backward(x.cpu().numpy(), 1.0), rtol=1e-6)
    with pytest.raises(ValueError, match="x is on GPU 1 and grad on GPU 0"):
        fastrelu.relu_backward(x, torch.ones(1000, device="cuda:0"))


@simulator
def test_the_common_call_skips_the_general_checks(monkeypatch):
    """Device arrays of one type, dtype and shape go straight to the run;
    anything else, errors included, through the general path."""
    rng = np.random.default_rng(5)
    x, g = rng.standard_normal((2, 6, 7)).astype(np.float32)
    want = fastrelu.relu_backward(x, g, at_zero=0.5), fastrelu.relu(x[:, ::2])
    general = []
    placement = _device.placement
    monkeypatch.setattr(_device, "placement", lambda *a: general.append(a) or placement(*a))
    out = np.zeros_like(x)
    fastrelu.relu_backward(Interface(x), Interface(g), out=Interface(out), at_zero=0.5)
    got = fastrelu.relu(Interface(x[:, ::2]))  # strided: the run gathers it
    assert general == []
    np.testing.assert_array_equal(out, want[0])
    np.testing.assert_array_equal(got.copy_to_host(), want[1])
    cases = [
        lambda: fastrelu.relu_backward(Interface(x), 1.5),  # a host scalar
        lambda: fastrelu.relu_backward(Interface(x), Interface(g[:1])),  # broadcast
        lambda: fastrelu.relu_backward(Interface(x), Interface(g.astype(np.float64))),  # promotion
        lambda: fastrelu.relu_backward(Interface(x), Interface(g), at_zero=np.float32(0.5)),  # a NumPy scalar
    ]
    for n, case in enumerate(cases, 1):
        case()
        assert len(general) == n
    with pytest.raises(ValueError, match="at_zero"):
        fastrelu.relu_backward(Interface(x), Interface(g), at_zero=2.0)
    readonly = Interface(out)
    readonly.__cuda_array_interface__["data"] = (out.ctypes.data, True)
    with pytest.raises(ValueError, match="read-only"):
        fastrelu.relu(Interface(x), out=readonly)
