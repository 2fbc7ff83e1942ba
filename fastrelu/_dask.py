"""Dask arrays: the public functions, mapped over the blocks by Dask.

A call with a Dask array builds a lazy Dask array with ``dask.array.blockwise``
(Dask aligns the chunks and broadcasts), one task per output block, each
calling the same public function on NumPy or CuPy blocks.  Everything a user
can get wrong is checked when the graph is built, not when it runs: the
keyword arguments, the dtypes, the shapes, host and GPU blocks mixed.

Importing fastrelu does not import Dask; this module imports it only when a
call is given a Dask array.
"""

import numpy as np

from . import _device, _threads, config
from ._device import is_dask_array


def _block(func, threads, *blocks, **kwargs):
    """One task: *func* on one block of each operand, on at most *threads* threads."""
    with _threads.limit(threads):
        result = func(*blocks, **kwargs)
    return np.asarray(result) if isinstance(result, np.generic) else result


def _probe(a):
    """A stand-in for operand *a* that promotes as *a* does: Python numbers
    as themselves (weak), anything else as an empty array of its dtype."""
    if type(a) in (int, float):
        return a
    dtype = a.dtype if is_dask_array(a) else np.asarray(a).dtype
    return np.empty(0, dtype)


def apply(kernel, operands, out, device, stream, kwargs):
    """*kernel*'s public function on *operands* with keyword arguments
    *kwargs*, as a lazy Dask array, block by block."""
    import dask.array as da

    from . import activations

    name = kernel.name
    func = getattr(activations, name)
    if out is not None:
        raise TypeError(
            f"{name}: out= is not supported with Dask arrays; use the returned Dask array "
            "(and dask.array.store to write it into an existing array)"
        )
    if stream is not None:
        raise TypeError(f"{name}: stream= does not apply to Dask arrays; each task uses the default stream")
    # The blocks' own kind (NumPy or CuPy) decides where each task runs.
    metas = {n: a._meta if is_dask_array(a) else a for n, a in zip(kernel.operands, operands)}
    _device.placement(device, None, metas)
    # The function itself on empty stand-ins: the keyword arguments are
    # checked now, and the result dtype follows exactly fastrelu's rules.
    dtype = func(*[_probe(a) for a in operands], **kwargs).dtype

    arrays = []
    for a in operands:
        if not is_dask_array(a) and type(a) not in (int, float) and np.ndim(a) > 0:
            a = da.asarray(a)
        arrays.append(a)
    shapes = [getattr(a, "shape", ()) for a in arrays]
    try:
        ndim = len(da.core.broadcast_shapes(*shapes))
    except ValueError:
        shapes = ", ".join(str(s) for s in shapes)
        names = " and ".join(kernel.operands)
        raise ValueError(f"{name}: {names} cannot be broadcast together: shapes {shapes}") from None
    pairs = []
    for a in arrays:
        # Scalars go into every task as they are; arrays align from the right.
        pairs += [a, None] if np.ndim(a) == 0 and not is_dask_array(a) else [a, tuple(range(a.ndim))[::-1]]
    like = next(a for a in arrays if is_dask_array(a))._meta
    return da.blockwise(
        _block,
        tuple(range(ndim))[::-1],
        func,
        None,
        config.DASK_BLOCK_THREADS,
        None,
        *pairs,
        dtype=dtype,
        meta=da.utils.meta_from_array(like, ndim, dtype=dtype),
        token=f"fastrelu-{name}",
        device=device,
        **kwargs,
    )


def _mask_chunks(x):
    """*x* with its chunks along the last axis multiples of 4 elements (but
    the last), so that no byte of a mask spans two blocks."""
    last = x.chunks[-1]
    if all(c % 4 == 0 for c in last[:-1]):
        return x
    step = max(4, (max(last) + 3) // 4 * 4)
    return x.rechunk({x.ndim - 1: step})


def _packed_chunks(chunks):
    """The chunks of the bits of a mask of an array chunked as *chunks*."""
    return chunks[:-1] + (tuple((c + 3) // 4 for c in chunks[-1]),)


def _forward_block(threads, block):
    from . import _mask

    with _threads.limit(threads):
        return _mask.relu_with_mask(block)[1].bits


def _backward_block(threads, bits, grad, *, mask_dtype, at_zero):
    from . import _mask

    with _threads.limit(threads):
        mask = _mask.ReluMask(bits, grad.shape, mask_dtype)
        return np.asarray(_mask.relu_backward_from_mask(mask, grad, at_zero=at_zero))


def _refuse(name, out, stream, mask_out=None):
    if out is not None or mask_out is not None:
        raise TypeError(
            f"{name}: out= and mask_out= are not supported with Dask arrays; use the returned Dask "
            "arrays (and dask.array.store to write them into existing arrays)"
        )
    if stream is not None:
        raise TypeError(f"{name}: stream= does not apply to Dask arrays; each task uses the default stream")


def relu_with_mask(x, out, mask_out, device, stream):
    """:func:`fastrelu.relu_with_mask` of a Dask array: ``y`` and a mask
    whose bits are a Dask array chunked as ``x`` (see :func:`_mask_chunks`).
    ``y`` and the bits are two tasks per block, each reading the block."""
    import dask.array as da

    from . import _mask
    from ._table import KERNELS

    _refuse("relu_with_mask", out, stream, mask_out)
    if not is_dask_array(x):
        raise TypeError("relu_with_mask: out and mask_out cannot be Dask arrays for an x that is not one")
    _device.placement(device, None, {"x": x._meta})
    _mask.relu_with_mask(np.empty(0, x.dtype))  # the dtype's checks, now
    shape, flat = x.shape, x.ndim == 0
    if flat:
        x = x.reshape(1)
    x = _mask_chunks(x)
    y = apply(KERNELS["relu"], (x,), None, device, None, {})
    bits = da.map_blocks(
        _forward_block,
        config.DASK_BLOCK_THREADS,
        x,
        dtype=np.uint8,
        chunks=_packed_chunks(x.chunks),
        meta=da.utils.meta_from_array(x._meta, x.ndim, dtype=np.uint8),
        token="fastrelu-relu_with_mask",
    )
    return (y.reshape(()) if flat else y), _mask.ReluMask(bits, shape, x.dtype)


def relu_backward_from_mask(mask, grad, out, at_zero, device, stream):
    """:func:`fastrelu.relu_backward_from_mask` with Dask bits or a Dask
    ``grad``: a Dask array chunked as the mask's bits say."""
    import dask.array as da

    from . import _mask

    _refuse("relu_backward_from_mask", out, stream)
    bits = mask.bits if is_dask_array(mask.bits) else da.from_array(np.asarray(mask.bits))
    _device.placement(device, None, {"bits": bits._meta, "grad": grad._meta if is_dask_array(grad) else grad})
    # The eager function on empty stand-ins: at_zero and the dtypes are
    # checked now, and the result dtype follows the eager rules.
    empty = _mask.ReluMask(np.empty(0, np.uint8), (0,), mask.dtype)
    dtype = _mask.relu_backward_from_mask(empty, _probe(grad), at_zero=at_zero).dtype
    _mask._check_grad_shape(mask.shape, np.shape(grad))
    shape = mask.shape or (1,)
    if not is_dask_array(grad):
        grad = da.asarray(np.asarray(grad, dtype))
    grad = da.broadcast_to(grad.reshape((1,) * (len(shape) - grad.ndim) + grad.shape), shape)
    # The elements' chunks along the last axis: 4 per byte, but the last.
    last = bits.chunks[-1]
    elements = tuple(4 * c for c in last[:-1]) + (shape[-1] - 4 * sum(last[:-1]),)
    grad = grad.rechunk(bits.chunks[:-1] + (elements,))
    result = da.map_blocks(
        _backward_block,
        config.DASK_BLOCK_THREADS,
        bits,
        grad,
        dtype=dtype,
        chunks=grad.chunks,
        meta=da.utils.meta_from_array(grad._meta, grad.ndim, dtype=dtype),
        token="fastrelu-relu_backward_from_mask",
        at_zero=at_zero,
        mask_dtype=mask.dtype,
    )
    return result.reshape(()) if not mask.shape else result
