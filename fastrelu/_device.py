"""Where a call runs, and the GPU side of the NumPy-compatible front.

A call runs on the GPU when an operand lives there: an object exposing
``__cuda_array_interface__`` (a Numba device array, a CuPy array, a PyTorch
CUDA tensor), or when it asks with ``device="cuda"``.  Nothing here imports
Numba's CUDA support until a call needs it.

Device operands are described by :class:`DeviceOperand` (shape, dtype,
strides, address), checked by the same rules as host arrays, and handed to
the kernels of :mod:`fastrelu._cuda` as 1-D contiguous device arrays: the
very same memory when an operand is contiguous with the compute dtype and
the result's shape, otherwise a contiguous copy made on the device
(broadcast, strided, cast, or away from a partial overlap with ``out``).
"""

import functools
import math
import sys
from typing import Any

import numpy as np

DEVICES = (None, "cpu", "cuda")


def cuda_available() -> bool:
    """Whether a CUDA GPU (or Numba's CUDA simulator) can run fastrelu's kernels.

    Never raises and prints nothing: without numba-cuda, a driver or a GPU
    the answer is False.

    Returns
    -------
    bool

    Examples
    --------
    >>> import fastrelu
    >>> fastrelu.cuda_available() in (True, False)
    True
    """
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from numba import cuda

            return bool(cuda.is_available())
    except Exception:  # a missing CUDA library raises RuntimeError, not ImportError
        return False


def _simulated(obj):
    """A device array of Numba's CUDA simulator (it has no interface)."""
    return type(obj).__name__ == "FakeCUDAArray"


def is_dask_array(obj):
    """Whether *obj* is a Dask array, without importing Dask: one can only
    exist once its user has imported ``dask.array``."""
    da = sys.modules.get("dask.array")
    return da is not None and type(obj) is not np.ndarray and isinstance(obj, da.Array)


def _library(obj):
    """The top-level module of *obj*'s type: "cupy", "torch", "numba", ..."""
    return type(obj).__module__.partition(".")[0]


def is_device_array(obj):
    """Whether *obj* is an array in GPU memory."""
    if type(obj) is np.ndarray:
        return False
    if _library(obj) == "torch":
        # Without evaluating the interface, which PyTorch builds in Python.
        return getattr(obj, "is_cuda", False) is True
    return hasattr(obj, "__cuda_array_interface__") or _simulated(obj)


class DeviceOperand:
    """A device array as the front sees it: ``shape``, ``dtype``, ``ndim``,
    byte ``strides``, the address of element 0, the producer's ``stream``
    (the handle the CUDA Array Interface names, or None), the library that
    made it (``kind``: "cupy", "torch", "numba", ...) and the object itself.

    A PyTorch tensor is read through its own attributes, which cost a
    fraction of its Python-level ``__cuda_array_interface__`` (version 2,
    without a stream: PyTorch's work is ordered by its current stream).
    """

    def __init__(self, obj):
        self.obj = obj
        self.stream = self._contiguous = self._span = self._strides = None
        self.kind = kind = _library(obj)
        if kind == "torch" and not obj.requires_grad:
            self.dtype = _torch_dtype(obj.dtype)
            self.shape = tuple(obj.shape)
            itemsize = obj.element_size()
            self._strides = tuple(s * itemsize for s in obj.stride())
            self.ptr, self.readonly = obj.data_ptr(), False
        elif _simulated(obj):
            host = obj._ary  # the simulator keeps device memory in a NumPy array
            self.shape, self.dtype, self._strides = host.shape, host.dtype, host.strides
            self.ptr, self.readonly = host.ctypes.data, not host.flags.writeable
        else:
            cai = obj.__cuda_array_interface__
            self.shape, self.dtype = tuple(cai["shape"]), _dtype(cai["typestr"])
            strides = cai.get("strides")
            if strides is None:  # C-contiguous, by the interface's definition
                self._contiguous = True
            else:
                self._strides = tuple(strides)
            self.ptr, self.readonly = cai["data"]
            if cai.get("version", 0) >= 3:
                self.stream = cai.get("stream")
        self.ndim, self.size = len(self.shape), math.prod(self.shape)
        if self._contiguous:
            self._span = (self.ptr, self.size)

    @property
    def strides(self):
        """Byte strides, as NumPy gives them."""
        if self._strides is None:
            self._strides = _c_strides(self.shape, self.dtype)
        return self._strides

    @property
    def device(self):
        """The ordinal of the GPU that holds the array, or None where it
        holds no memory or there is one GPU (or the simulator's)."""
        obj, kind = self.obj, self.kind
        if kind == "torch":
            return obj.device.index
        if kind == "cupy":
            return obj.device.id
        if self.ptr == 0 or _simulated(obj) or gpu_count() <= 1:
            return None
        from numba.cuda.cudadrv import driver

        binding = driver.binding
        attribute = binding.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
        return int(driver.driver.cuPointerGetAttribute(attribute, binding.CUdeviceptr(self.ptr)))

    def c_contiguous(self):
        if self._contiguous is None:
            self._contiguous = self.size <= 1 or self.strides == _c_strides(self.shape, self.dtype)
        return self._contiguous

    def span(self):
        """(lowest address, number of elements) of the memory the array spans."""
        if self._span is None:
            lo = hi = self.ptr
            for n, s in zip(self.shape, self.strides):
                if n == 0:
                    self._span = (self.ptr, 0)
                    return self._span
                lo, hi = lo + min(0, s * (n - 1)), hi + max(0, s * (n - 1))
            self._span = (lo, (hi - lo) // self.dtype.itemsize + 1)
        return self._span


@functools.cache
def gpu_count():
    """The number of GPUs Numba sees (the simulator's one included; 0
    without a driver)."""
    try:
        from numba import cuda

        return len(cuda.gpus)
    except Exception:  # a missing driver raises CudaSupportError
        return 0


@functools.cache
def _dtype(typestr):
    return np.dtype(typestr)


_torch_dtypes: dict[Any, Any] = {}


def _torch_dtype(dtype):
    """The NumPy dtype of PyTorch dtype *dtype*, or *dtype* itself where
    NumPy has none (bfloat16), which the front then refuses by name."""
    np_dtype = _torch_dtypes.get(dtype)
    if np_dtype is None:
        import torch

        try:
            np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        except TypeError:
            return dtype
        _torch_dtypes[dtype] = np_dtype
    return np_dtype


def torch_dtype_of(dtype):
    """The PyTorch dtype of NumPy dtype *dtype*."""
    for torch_dtype, np_dtype in _torch_dtypes.items():
        if np_dtype == dtype:
            return torch_dtype
    import torch

    torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
    _torch_dtypes[torch_dtype] = dtype
    return torch_dtype


def _c_strides(shape, dtype):
    strides, step = [], dtype.itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def placement(device, out, operands):
    """Where a call with *operands* (a dict: name -> operand) and *out*
    runs: "cpu", "cuda", or "dask" when an operand is a Dask array (whose
    blocks decide, task by task).

    Host scalars (Python numbers, NumPy scalars and 0-d arrays) go with
    either side.  Raises before anything is computed: ``ValueError`` for an
    unknown *device*, ``TypeError`` for host and device arrays in one call
    (no silent copies) or device arrays with ``device="cpu"``,
    ``RuntimeError`` for ``device="cuda"`` without a usable GPU.
    """
    host = np.ndarray
    if (
        device is None
        and (out is None or type(out) is host)
        and all(type(a) is host or type(a) is float for a in operands.values())
    ):
        return "cpu"  # the common case, kept cheap for small calls
    if device not in DEVICES:
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    named = dict(operands, out=out)
    named = {name: a for name, a in named.items() if a is not None}
    if any(is_dask_array(a) for a in named.values()):
        return "dask"
    on_device = [name for name, a in named.items() if is_device_array(a)]
    on_host = [name for name, a in named.items() if name not in on_device and np.ndim(a) > 0]
    if device == "cpu" and on_device:
        raise TypeError(
            f"device='cpu', but {', '.join(on_device)} {'is' if len(on_device) == 1 else 'are'} "
            "on the GPU: copy to the host first"
        )
    if device is None:
        if on_device and on_host:
            raise TypeError(
                f"{', '.join(on_device)} on the GPU and {', '.join(on_host)} on the host in one call: "
                "move them to one side first, or pass device='cuda' with host arrays only"
            )
        return "cuda" if on_device else "cpu"
    if device == "cuda":
        if on_device and on_host:
            raise TypeError(
                f"device='cuda' takes either host arrays (copied in and out) or device arrays, "
                f"not both: {', '.join(on_device)} on the GPU, {', '.join(on_host)} on the host"
            )
        if not cuda_available():
            raise RuntimeError(
                "device='cuda', but no usable CUDA GPU was found (see fastrelu.cuda_available())"
            )
        return "cuda"
    return "cpu"
