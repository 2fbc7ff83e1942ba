"""The GPU path: numba.cuda kernels over the same scalar formulas, and the
run that feeds them.

Importing this module imports ``numba.cuda``; fastrelu imports it only when
a call runs on the GPU.  Each kernel is compiled lazily, per dtype, on its
first launch (an eager signature would need a GPU at import), and launched
on raw device addresses: no Numba device array is built and no dispatcher
resolves types on the way, so a call costs little more than the driver's
launch.  Indices are 64-bit (``cuda.grid(1)`` widens the block offset), so
arrays of more than 2**31 elements are covered.

Where a call runs, on which stream and into what memory:

- **Device.** On the GPU that holds the operands (a tensor on ``cuda:1``
  runs on device 1); operands on two GPUs are an error.
- **Stream.** On ``stream=`` if given; otherwise on the stream the first
  operand's CUDA Array Interface names (version 3), on PyTorch's current
  stream for PyTorch tensors, else on the legacy default stream.  Work of
  any other stream an operand names is waited for on the GPU (an event),
  never by the host.  Results made here are Numba arrays bound to that
  stream, or arrays of the caller's library allocated on it.
- **Memory.** Results and temporaries of a CuPy or PyTorch call come from
  that library's allocator (its caching pool, on the launch stream);
  Numba device arrays keep Numba's allocation.

Nothing waits for the GPU unless the result must come back to the host.
"""

import contextlib
import ctypes
from typing import Any

import numpy as np
from numba import config, cuda, types
from numba.extending import register_jitable
from numba.np.numpy_support import from_dtype

from . import _device, _threads, _vectors
from . import _formulas as f
from ._device import DeviceOperand
from ._table import KERNELS

# Threads per block, and the most blocks a launch asks for: a grid-stride
# loop covers any size, and a small grid keeps the simulator fast.
THREADS = 256
MAX_BLOCKS = 65535
SIMULATOR_MAX_BLOCKS = 4

# Stream handles with a meaning of their own in the CUDA Array Interface.
LEGACY_DEFAULT = 1
PER_THREAD_DEFAULT = 2


_ACCESS = {name: getattr(_vectors, name) for name in ("vload", "vstore", "load1", "store1")}
load1, store1 = _vectors.load1, _vectors.store1
_GRID = """
def grid({operands}, out, n, scalars):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    count = n // {width}
    j = start
    while j + stride < count:  # two accesses per operand in flight before the first store
        k = j + stride
{load_j}
{load_k}
        {store_j}
        {store_k}
        j = k + stride
    if j < count:
{load_j}
        {store_j}
{tail}"""

_TAIL = """    i = count * {width} + start  # the last n % {width} elements, one per thread
    if i < n:
        store1(out, i, formula({operands}, *scalars))
"""


def grid_kernel(kernel, width=1):
    """The grid-stride CUDA kernel of *kernel* (an entry of
    :data:`fastrelu._table.KERNELS`), as a Python function for ``cuda.jit``:
    it takes the operands, the output, the number of elements and the tuple
    of scalars.  Operands and output are contiguous: raw pointers on a GPU,
    arrays in the simulator.  Elements are computed in the compute dtype
    (float16 in float32) and accessed *width* at a time (one 16-byte access:
    :mod:`fastrelu._vectors`), which needs all of one dtype and 16-byte
    aligned; the last ``n % width`` are done one by one."""
    if len(kernel.operands) not in (1, 2):
        raise ValueError(f"{kernel.name}: a kernel has 1 or 2 operands, not {len(kernel.operands)}")
    names = [f"x{m}" for m in range(len(kernel.operands))]

    def loads(var, index):
        access = "vload" if width > 1 else "load1"
        return "\n".join(f"        {var}{m} = {access}({name}, {index})" for m, name in enumerate(names))

    def value(var, lane=""):
        return f"formula({', '.join(f'{var}{m}{lane}' for m in range(len(names)))}, *scalars)"

    def store(var, index):
        if width == 1:
            return f"store1(out, {index}, {value(var)})"
        lanes = ", ".join(value(var, f"[{lane}]") for lane in range(width))
        return f"vstore(out, {index}, ({lanes},))"

    tail = ""
    if width > 1:
        tail = _TAIL.format(width=width, operands=", ".join(f"load1({x}, i)" for x in names))
    source = _GRID.format(
        operands=", ".join(names),
        width=width,
        load_j=loads("a", "j"),
        load_k=loads("b", "k"),
        store_j=store("a", "j"),
        store_k=store("b", "k"),
        tail=tail,
    )
    namespace = {"cuda": cuda, "formula": getattr(f, kernel.formula), **_ACCESS}
    exec(compile(source, f"<fastrelu grid kernel {kernel.name}, width {width}>", "exec"), namespace)
    return namespace["grid"]


@register_jitable
def _position(i, offset, strides, shape):
    """Element offset of the C-order index *i* of *shape* in a strided array."""
    pos = offset
    for d in range(len(shape) - 1, -1, -1):
        pos += (i % shape[d]) * strides[d]
        i //= shape[d]
    return pos


def gather_kernel(src, offset, strides, shape, dst, n):
    # A contiguous copy of a strided, broadcast or other-dtype operand.
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dst[i] = src[_position(i, offset, strides, shape)]


def scatter_kernel(src, dst, offset, strides, shape, n):
    # The contiguous result into a strided out.
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dst[_position(i, offset, strides, shape)] = src[i]


def fill_kernel(dst, value, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dst[i] = value


def mask_forward_kernel(x, y, bits, row, row_bytes, nbytes):
    # relu and the mask (fastrelu.ReluMask): one thread per byte of the
    # mask, which it alone writes, and its up to 4 elements.
    for b in range(cuda.grid(1), nbytes, cuda.gridsize(1)):
        r = b // row_bytes
        q = b - r * row_bytes
        e = r * row + 4 * q
        code = 0
        for k in range(min(4, row - 4 * q)):
            v = load1(x, e + k)
            store1(y, e + k, f.relu(v))
            code |= f.relu_code(v) << (2 * k)
        store1(bits, b, code)


def mask_backward_kernel(grad, out, bits, row, row_bytes, nbytes, scalars):
    # relu_backward from the mask: one thread per byte of the mask.
    for b in range(cuda.grid(1), nbytes, cuda.gridsize(1)):
        r = b // row_bytes
        q = b - r * row_bytes
        e = r * row + 4 * q
        codes = load1(bits, b)
        for k in range(min(4, row - 4 * q)):
            store1(out, e + k, f.relu_grad_code((codes >> (2 * k)) & 3, load1(grad, e + k), scalars[0]))


_HELPERS = {
    "gather": gather_kernel,
    "scatter": scatter_kernel,
    "fill": fill_kernel,
    "mask_forward": mask_forward_kernel,
    "mask_backward": mask_backward_kernel,
}
_dispatchers: dict[Any, Any] = {}


def dispatcher(name, width=1):
    """The lazily compiling ``cuda.jit`` dispatcher of kernel *name*: an
    entry of :data:`fastrelu._table.KERNELS` (accessing memory *width*
    elements at a time) or a layout helper."""
    key = (name, width)
    disp = _dispatchers.get(key)
    if disp is None:
        func = _HELPERS[name] if name in _HELPERS else grid_kernel(KERNELS[name], width)
        disp = _dispatchers[key] = cuda.jit(func)
    return disp


_pointer_types: dict[Any, Any] = {}


def pointer(dtype):
    """The Numba type of a raw device pointer to elements of *dtype*."""
    ty = _pointer_types.get(dtype)
    if ty is None:
        ty = _pointer_types[dtype] = types.CPointer(from_dtype(dtype))
    return ty


def scalars_type(compute, count):
    """The Numba type of a kernel's tuple of *count* scalars of dtype *compute*."""
    return types.UniTuple(from_dtype(compute), count) if count else types.Tuple(())


_compiled: dict[Any, Any] = {}  # (name, width, compute, spec) -> the compiled kernel


def launch(name, compute, spec, n, args, stream, width=1):
    """Launch kernel *name* over *n* elements, asynchronously on the Numba
    stream *stream*.

    *args* are the kernel's arguments: addresses on a GPU (arrays in the
    simulator), integers, and for an entry of :data:`fastrelu._table.KERNELS`
    a last tuple of scalars of dtype *compute*; such a kernel accesses
    memory *width* elements at a time.  *spec* is what the arguments' types
    depend on (see :func:`signature`).  On a GPU the kernel compiled for
    them is launched directly; the simulator takes its dispatcher.
    """
    if n == 0:
        return
    threads = -(-n // width)
    if config.ENABLE_CUDASIM:
        blocks = max(1, min(SIMULATOR_MAX_BLOCKS, -(-threads // THREADS)))
        dispatcher(name, width)[blocks, THREADS, stream](*args)
        return
    key = (name, width, compute, spec)
    compiled = _compiled.get(key)
    if compiled is None:
        sig = signature(name, compute, spec)
        device = cuda.get_current_device().id
        compiled = _compiled[key] = _threads.uninterrupted(_compile, name, width, sig, device)
    blocks = max(1, min(MAX_BLOCKS, -(-threads // THREADS)))
    compiled.launch(args, (blocks,), (THREADS,), _launch_streams[stream])


def _compile(name, width, sig, device):
    # On fastrelu._threads.uninterrupted's helper thread, which has no
    # current device until it enters the caller's.
    with cuda.gpus[device]:
        return dispatcher(name, width).compile(sig)


def signature(name, compute, spec):
    """The Numba types of the arguments of kernel *name*, from *spec*:
    (source dtype, destination dtype, dimensions) for "gather" and
    "scatter", (dtype,) for "fill" and "mask_forward", (grad dtype, result
    dtype) for "mask_backward", and for an entry of
    :data:`fastrelu._table.KERNELS` the dtypes of its operands and output
    and then the number of scalars (computing in *compute*)."""
    i64 = types.int64
    if name in ("gather", "scatter"):
        src, dst, ndim = spec
        layout = (i64, types.UniTuple(i64, ndim), types.UniTuple(i64, ndim))
        if name == "gather":
            return (pointer(src), *layout, pointer(dst), i64)
        return (pointer(src), pointer(dst), *layout, i64)
    if name == "fill":
        (dtype,) = spec
        return (pointer(dtype), from_dtype(dtype), i64)
    if name == "mask_forward":
        (dtype,) = spec
        return (pointer(dtype), pointer(dtype), pointer(np.dtype(np.uint8)), i64, i64, i64)
    if name == "mask_backward":
        grad, result = spec
        return (
            pointer(grad),
            pointer(result),
            pointer(np.dtype(np.uint8)),
            i64,
            i64,
            i64,
            scalars_type(compute, 1),
        )
    *dtypes, count = spec
    return (*map(pointer, dtypes), i64, scalars_type(compute, count))


def stream_handle(stream):
    """The handle of *stream*, a Numba, CuPy or PyTorch stream or any object
    with ``__cuda_stream__``, with 0 (a library's name for the legacy
    default stream) as :data:`LEGACY_DEFAULT`."""
    protocol = getattr(stream, "__cuda_stream__", None)
    if config.ENABLE_CUDASIM and isinstance(stream, cuda.stream):
        handle = id(stream)  # the simulator's streams have no handle, nor need one
    elif protocol is not None:
        handle = protocol()[1]
    elif hasattr(stream, "ptr"):  # CuPy
        handle = stream.ptr
    elif hasattr(stream, "cuda_stream"):  # PyTorch
        handle = stream.cuda_stream
    else:
        raise TypeError(f"stream must be a Numba, CuPy or PyTorch CUDA stream, got {type(stream).__name__}")
    return int(handle or 0) or LEGACY_DEFAULT


def interface_stream(op, name):
    """The stream handle that operand *op* (called *name*) names in its CUDA
    Array Interface, or None: no synchronisation is needed.  0 is not a
    valid entry; Numba arrays bound to the default stream export it, and it
    is read as the legacy default stream."""
    handle = op.stream
    if handle is None:
        return None
    if isinstance(handle, bool) or not isinstance(handle, int):
        raise TypeError(
            f"{name}: the stream entry of its __cuda_array_interface__ must be an integer or None, "
            f"got {handle!r}"
        )
    return handle or LEGACY_DEFAULT


def plan_streams(stream, named):
    """The stream to launch on and the producers' streams to wait for.

    Parameters
    ----------
    stream : stream object or None
        The caller's ``stream=``.
    named : dict
        Name -> :class:`~fastrelu._device.DeviceOperand`, inputs then out.

    Returns
    -------
    launch : int
        The handle of the stream the kernels go on.
    waits : list of int
        Handles of other streams the operands name, in order, without
        repeats: the launch stream waits for the work queued on them.
    torch_current : bool
        Whether *launch* was taken from PyTorch's current stream.
    """
    producers = [h for name, op in named.items() if (h := interface_stream(op, name)) is not None]
    torch_current = False
    if stream is not None:
        handle = stream_handle(stream)
    elif producers:
        handle = producers[0]
    elif any(op.kind == "torch" for op in named.values()):
        handle, torch_current = None, True
    else:
        handle = LEGACY_DEFAULT
    waits = []
    for h in producers:
        if h != handle and h not in waits:
            waits.append(h)
    return handle, waits, torch_current


def common_device(named):
    """The ordinal of the GPU all operands in *named* (name -> DeviceOperand)
    are on, or None where none says or there is one GPU; a ``ValueError``
    names two on different GPUs."""
    if _device.gpu_count() == 1:
        return None
    device, first = None, None
    for name, op in named.items():
        d = op.device
        if d is None:
            continue
        if device is None:
            device, first = d, name
        elif d != device:
            raise ValueError(
                f"{first} is on GPU {device} and {name} on GPU {d}: "
                "move them to one device first (fastrelu copies nothing behind your back)"
            )
    return device


def on_device(device):
    """A context in which Numba launches on GPU *device* (None: the current one)."""
    if (
        device is None
        or config.ENABLE_CUDASIM
        or _device.gpu_count() == 1
        or cuda.get_current_device().id == device
    ):
        return contextlib.nullcontext()
    return cuda.gpus[device]


_streams: dict[Any, Any] = {}  # (device, handle) -> a Numba stream over the handle
# Numba stream -> what a compiled kernel's launch takes: numba-cuda's
# dispatcher turns its streams into cuda.core streams first (0.30 on), and so
# does fastrelu, which launches compiled kernels without the dispatcher.
_launch_streams: dict[Any, Any] = {}
_events: dict[Any, Any] = {}  # device -> an event for cross-stream waits


def numba_stream(handle, device):
    """A Numba stream object over stream *handle* of GPU *device*."""
    if config.ENABLE_CUDASIM:
        return cuda.default_stream()
    key = (device, handle)
    stream = _streams.get(key)
    if stream is None:
        if len(_streams) > 256:  # handles of streams long gone
            _streams.clear()
            _launch_streams.clear()
        if handle == LEGACY_DEFAULT:
            stream = cuda.legacy_default_stream()
        elif handle == PER_THREAD_DEFAULT:
            stream = cuda.per_thread_default_stream()
        else:
            stream = cuda.external_stream(handle)
        from numba.cuda.cudadrv import driver

        to_core = getattr(driver, "_to_core_stream", None)
        _launch_streams[stream] = to_core(stream) if to_core is not None else stream
        _streams[key] = stream
    return stream


def wait_for(waits, launch_stream, device):
    """Make *launch_stream* wait, on the GPU, for the work queued so far on
    each stream in *waits* (handles)."""
    if not waits or config.ENABLE_CUDASIM:  # the simulator runs everything at once
        return
    event = _events.get(device)
    if event is None:
        event = _events[device] = cuda.event(timing=False)
    for handle in waits:
        event.record(numba_stream(handle, device))
        event.wait(launch_stream)


def _library_stream(kind, handle, device):
    """A context in which *kind*'s allocator ("torch" or "cupy") allocates
    for the stream *handle* of GPU *device*: its current stream unless that
    is another one."""
    if kind == "torch":
        import torch

        current = torch.cuda.current_stream(device)
        if (current.cuda_stream or LEGACY_DEFAULT) == handle:
            return contextlib.nullcontext()
        return torch.cuda.stream(torch.cuda.ExternalStream(handle, device=current.device))
    import cupy

    with cupy.cuda.Device(device):
        current = cupy.cuda.get_current_stream()
        if (current.ptr or LEGACY_DEFAULT) == handle:
            return contextlib.nullcontext()
        return cupy.cuda.ExternalStream(handle, device_id=cupy.cuda.Device().id)


class Allocator:
    """Device memory for results and temporaries, from the library of the
    call's arrays: PyTorch's or CuPy's allocator, on the launch stream, or
    Numba's for Numba arrays and host operands."""

    def __init__(self, kind, handle, stream, device):
        self.kind = kind if kind in ("torch", "cupy") else "numba"
        self.handle, self.stream, self.device = handle, stream, device

    def empty(self, shape, dtype):
        """A new device array of *shape* and *dtype*, of the allocator's library."""
        if self.kind == "torch":
            import torch

            from ._device import torch_dtype_of

            device = torch.device("cuda", self.device) if self.device is not None else torch.device("cuda")
            with _library_stream("torch", self.handle, device.index):
                return torch.empty(shape, dtype=torch_dtype_of(dtype), device=device)
        if self.kind == "cupy":
            import cupy

            with cupy.cuda.Device(self.device), _library_stream("cupy", self.handle, self.device):
                return cupy.empty(shape, dtype)
        return cuda.device_array(shape, dtype, stream=self.stream)


def span_array(op):
    """The simulator's 1-D array over the memory *op* spans, from its lowest
    address: its "device" memory is host memory."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    lo, n = op.span()
    buf = (ctypes.c_char * (n * op.dtype.itemsize)).from_address(lo)
    return FakeCUDAArray(np.frombuffer(buf, op.dtype, count=n))


def address(op):
    """The kernel argument of *op*'s memory from its lowest address: the
    address itself on a GPU, an array over it in the simulator."""
    return span_array(op) if config.ENABLE_CUDASIM else op.span()[0]


def _layout(op, shape):
    """(element offset, element strides) that read *op* broadcast to *shape*."""
    lo, _ = op.span()
    itemsize = op.dtype.itemsize
    strides = [0] * (len(shape) - op.ndim) + [
        0 if n == 1 else s // itemsize for n, s in zip(op.shape, op.strides)
    ]
    return (op.ptr - lo) // itemsize, tuple(strides)


def _overlap(a, b):
    (alo, an), (blo, bn) = a.span(), b.span()
    return alo < blo + bn * b.dtype.itemsize and blo < alo + an * a.dtype.itemsize


def _same_view(a, b):
    return a.ptr == b.ptr and a.strides == b.strides and a.shape == b.shape and a.dtype == b.dtype


def _input_view(a, shape, n, result, compute, target, alloc):
    """A contiguous operand as the kernel reads input *a*: *a* itself where
    it is contiguous, of the *result* dtype and shape, and not partly under
    *target*; otherwise a copy in the *compute* dtype made on the device
    (broadcast, strided, cast; a host scalar filled in).  A :class:`DeviceOperand`."""
    if isinstance(a, DeviceOperand) and a.dtype == result and a.shape == shape and a.c_contiguous():
        if target is None or not _overlap(a, target) or _same_view(a, target):
            return a
    buf = DeviceOperand(alloc.empty(shape, compute))
    if not isinstance(a, DeviceOperand):  # a host scalar
        launch("fill", None, (compute,), n, (address(buf), compute.type(a[()]), n), alloc.stream)
        return buf
    offset, strides = _layout(a, shape)
    args = (address(a), offset, strides, shape, address(buf), n)
    launch("gather", None, (a.dtype, compute, len(shape)), n, args, alloc.stream)
    return buf


def access_width(dtype, operands):
    """Elements a kernel of *dtype* accesses at a time on *operands*
    (DeviceOperands: its operands and output): 16 bytes' worth where all are
    of *dtype* and 16-byte aligned, else 1."""
    if dtype not in _vectors.VECTOR_DTYPES:
        return 1
    for op in operands:
        if op.dtype != dtype or op.span()[0] % _vectors.VECTOR_BYTES:
            return 1
    return _vectors.width(dtype)


def run(kernel, inputs, out, shape, result, scalars, compute, stream=None):
    """Compute *kernel* on the GPU; the GPU twin of ``_elementwise.run``.

    *inputs* are DeviceOperands, host scalars (0-d arrays), or, where the
    caller asked for ``device="cuda"``, host arrays, which are copied in; the
    result then comes back to the host.  *out* is None, a NumPy array or a
    DeviceOperand.  All checks on the arguments must already have passed,
    but for the operands' devices, checked here before anything is written.
    """
    host_out = isinstance(out, np.ndarray)
    named = {name: a for name, a in zip(kernel.operands, inputs) if isinstance(a, DeviceOperand)}
    target = None if out is None or host_out else out
    if target is not None:
        named["out"] = target
    device = common_device(named)
    handle, waits, torch_current = plan_streams(stream, named)
    like = next(iter(named.values()), None)
    # device="cuda" with host operands only: copy in, and the result back out.
    host_call = like is None

    with on_device(device):
        if torch_current:
            import torch

            handle = torch.cuda.current_stream(device).cuda_stream or LEGACY_DEFAULT
        launch_stream = numba_stream(handle, device)
        wait_for(waits, launch_stream, device)
        alloc = Allocator("numba" if host_call else like.kind, handle, launch_stream, device)
        if host_call:
            inputs = [
                DeviceOperand(cuda.to_device(np.ascontiguousarray(a), stream=launch_stream)) if a.ndim else a
                for a in inputs
            ]
        given = target  # fresh memory overlaps no input
        if target is None:
            target = DeviceOperand(alloc.empty(shape, result))
        n = target.size
        if n:
            direct = target.c_contiguous()
            flat = target if direct else DeviceOperand(alloc.empty(shape, result))
            views = [_input_view(a, shape, n, result, compute, given, alloc) for a in inputs]
            # The scalars in the compute dtype: constants of another type
            # would turn float32 arithmetic into float64.
            args = (*(address(v) for v in views), address(flat), n, tuple(compute.type(s) for s in scalars))
            spec = (*(v.dtype for v in views), result, len(scalars))
            launch(kernel.name, compute, spec, n, args, launch_stream, access_width(result, [*views, flat]))
            if not direct:
                offset, strides = _layout(target, shape)
                args = (address(flat), address(target), offset, strides, shape, n)
                launch("scatter", None, (result, result, len(shape)), n, args, launch_stream)

        if host_call:
            host = target.obj.copy_to_host(stream=launch_stream)
            launch_stream.synchronize()
            if host_out:
                np.copyto(out, host)
                return out
            return host[()] if host.ndim == 0 else host
    return target.obj


def _mask_call(direction, source, out, bits, shape, result, compute, scalars, stream):
    """The GPU twin of the CPU's mask code (:mod:`fastrelu._mask`):
    *direction* "forward" computes ``y`` from ``x`` (*source*) into the
    bits, "backward" the gradient from ``grad`` (*source*) and the bits.
    The arrays are DeviceOperands (a host ``grad`` scalar is filled in on
    the device), or all host arrays for ``device="cuda"``: copied in, and
    the results back out.  Returns ``(result, bits)``.  All checks must
    already have passed."""
    from ._mask import _layout, packed_shape

    named = {
        k: a for k, a in (("source", source), ("out", out), ("bits", bits)) if isinstance(a, DeviceOperand)
    }
    host_call = not named
    device = common_device(named)
    handle, waits, torch_current = plan_streams(stream, named)
    with on_device(device):
        if torch_current:
            import torch

            handle = torch.cuda.current_stream(device).cuda_stream or LEGACY_DEFAULT
        launch_stream = numba_stream(handle, device)
        wait_for(waits, launch_stream, device)
        alloc = Allocator(
            "numba" if host_call else next(iter(named.values())).kind, handle, launch_stream, device
        )
        host_bits = bits
        if host_call:
            if source.ndim:
                source = DeviceOperand(cuda.to_device(np.ascontiguousarray(source), stream=launch_stream))
            if direction == "backward":
                bits = DeviceOperand(cuda.to_device(np.ascontiguousarray(bits), stream=launch_stream))
        if bits is None or (host_call and direction == "forward"):
            bits = DeviceOperand(alloc.empty(packed_shape(shape), np.uint8))
        given = None if host_call else out
        target = given if given is not None else DeviceOperand(alloc.empty(shape, result))
        n = target.size
        if n:
            direct = target.c_contiguous()
            flat = target if direct else DeviceOperand(alloc.empty(shape, result))
            view = _input_view(source, shape, n, result, compute, given, alloc)
            row, row_bytes, nbytes = _layout(shape, n)
            args = (address(view), address(flat), address(bits), row, row_bytes, nbytes)
            if direction == "forward":
                launch("mask_forward", None, (result,), nbytes, args, launch_stream)
            else:
                args += (tuple(compute.type(s) for s in scalars),)
                launch("mask_backward", compute, (view.dtype, result), nbytes, args, launch_stream)
            if not direct:
                offset, strides = _layout(target, shape)
                args = (address(flat), address(target), offset, strides, shape, n)
                launch("scatter", None, (result, result, len(shape)), n, args, launch_stream)
        if not host_call:
            return target.obj, bits.obj
        y = target.obj.copy_to_host(stream=launch_stream)
        b = bits.obj.copy_to_host(stream=launch_stream) if direction == "forward" else None
        launch_stream.synchronize()
    if out is not None:
        np.copyto(out, y)
        y = out
    elif y.ndim == 0:
        y = y[()]
    if b is not None and host_bits is not None:
        np.copyto(host_bits, b)
        b = host_bits
    return y, b


def relu_with_mask(x, out, mask_out, device, stream):
    """:func:`fastrelu.relu_with_mask` on the GPU: device arrays, or host
    arrays with ``device="cuda"``."""
    from . import _mask
    from ._elementwise import as_array, check_out

    given_bits = getattr(mask_out, "bits", mask_out)
    _device.placement(device, out, {"x": x, "mask_out": given_bits})
    x = as_array("x", x)
    shape, dtype = x.shape, x.dtype
    if out is not None:
        out = check_out(out, shape, dtype)
    bits = None
    if mask_out is not None:
        bits = _mask._check_mask_out(mask_out, shape, (x, out))
        if not isinstance(bits, np.ndarray):
            bits = DeviceOperand(bits)
            if bits.readonly or not bits.c_contiguous():
                raise ValueError("mask_out must be a writeable, C-contiguous array")
    y, bits = _mask_call("forward", x, out, bits, shape, dtype, dtype, (), stream)
    return y, _mask.ReluMask(bits, shape, dtype)


def relu_backward_from_mask(mask, grad, out, at_zero, device, stream):
    """:func:`fastrelu.relu_backward_from_mask` on the GPU."""
    from . import _mask
    from ._elementwise import as_array, check_out

    _device.placement(device, out, {"bits": mask.bits, "grad": grad})
    grad_obj = grad
    grad = as_array("grad", grad)
    _mask._check_grad_shape(mask.shape, grad.shape)
    result, compute, scalars = _mask.backward_types(mask, grad_obj, at_zero)
    if out is not None:
        out = check_out(out, mask.shape, result)
    bits = mask.bits if isinstance(mask.bits, np.ndarray) else DeviceOperand(mask.bits)
    if isinstance(bits, DeviceOperand) and not bits.c_contiguous():
        raise ValueError("the mask's bits on the GPU must be C-contiguous")
    return _mask_call("backward", grad, out, bits, mask.shape, result, compute, scalars, stream)[0]
