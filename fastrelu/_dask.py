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
