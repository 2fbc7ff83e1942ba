"""The kind of array a call gives back: that of its inputs.

The kernels compute on NumPy arrays and device arrays.  Other kinds of
operands are read through a plain view, and the result is given back in
their kind:

- A PyTorch CPU tensor is read and written through ``Tensor.numpy()``,
  without a copy, and the result is a tensor over the memory the kernel
  wrote (a CUDA tensor goes to the GPU path, which gives back tensors
  itself).  A tensor that requires grad while autograd records is refused:
  computing on it outside autograd would cut the graph; ``fastrelu.torch``
  has the operators autograd knows.
- NumPy subclasses come back as NumPy's ufuncs give them back, through the
  ``__array_wrap__`` of the operand with the highest ``__array_priority__``
  (``np.matrix`` stays a matrix).  A masked array's result is masked where
  any operand is masked, and its masked positions hold what the kernel
  computed from the data underneath, as with ``np.maximum``.
"""

import sys

import numpy as np

from ._device import _library


def _torch_tensor(obj):
    """Whether *obj* is a PyTorch tensor that needs adapting: on the CPU, or
    one that requires grad (the GPU path takes the others as they are)."""
    if _library(obj) != "torch" or not hasattr(obj, "is_cuda"):
        return False
    if obj.is_cuda is not True:
        return True
    torch = sys.modules.get("torch")
    return getattr(obj, "requires_grad", False) is True and hasattr(torch, "is_grad_enabled")


def _tensor_view(name, tensor):
    """What the kernels read or write for *tensor*: a NumPy view of a CPU
    tensor, the (detached) tensor itself on the GPU."""
    torch = sys.modules["torch"]
    if tensor.requires_grad:
        if torch.is_grad_enabled():
            raise TypeError(
                f"{name} is a tensor that requires grad: computing on it outside autograd would cut the "
                "graph; use fastrelu.torch.relu or fastrelu.torch.softplus (or their modules), or call "
                "under torch.no_grad()"
            )
        tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        raise TypeError(f"{name} has dtype torch.bfloat16, which fastrelu does not support")
    if tensor.is_cuda:
        return tensor
    if tensor.device.type != "cpu":
        raise TypeError(f"{name} is a tensor on {tensor.device}; fastrelu computes on CPU and CUDA tensors")
    return tensor.numpy()


def adapt(names, objects, out):
    """``None`` if the operands *objects* (named *names*) and *out* are all
    of kinds the kernels take as they are; else ``(objects, out, finish)``:
    what to compute on, and the function that turns the result of that
    computation into the callers' kind."""
    special = [o for o in (*objects, out) if type(o) is not np.ndarray and isinstance(o, np.ndarray)]
    tensors = [o for o in (*objects, out) if _torch_tensor(o)]
    if not special and not tensors:
        return None
    plain, masks, wrapper = [], [], None
    for name, obj in zip((*names, "out"), (*objects, out)):
        if _torch_tensor(obj):
            obj = _tensor_view(name, obj)
        elif isinstance(obj, np.ma.MaskedArray):
            if name != "out":
                masks.append(np.ma.getmaskarray(obj))
            obj = obj.data
        elif type(obj) is not np.ndarray and isinstance(obj, np.ndarray):
            if name != "out" and (wrapper is None or obj.__array_priority__ > wrapper.__array_priority__):
                wrapper = obj
            obj = obj.view(np.ndarray)
        plain.append(obj)
    given = out

    def finish(result):
        if given is not None:
            if isinstance(given, np.ma.MaskedArray):
                given.mask = _union(masks, given.shape)
            return given
        if tensors:
            if _library(result) == "torch":
                return result
            return sys.modules["torch"].from_numpy(np.asarray(result))
        if masks:
            mask = _union(masks, np.shape(result))
            if not isinstance(result, np.ndarray):
                return np.ma.masked if mask else result
            result = result.view(np.ma.MaskedArray)
            result.mask = mask
            return result
        if wrapper is not None and isinstance(result, np.ndarray):
            try:
                return wrapper.__array_wrap__(result, None, False)
            except TypeError:  # a subclass with the signature of NumPy 1
                return wrapper.__array_wrap__(result)
        return result

    return plain[:-1], plain[-1], finish


def _union(masks, shape):
    """Where any of *masks* is set, broadcast to *shape*."""
    union = np.zeros(shape, dtype=bool)
    for mask in masks:
        union |= mask
    return union
