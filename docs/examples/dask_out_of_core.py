"""relu_backward over arrays on disk that do not fit in the memory given to
the computation: Dask reads them chunk by chunk from Zarr stores, the
workers of a local cluster run fastrelu on each chunk, and ``da.store``
writes each result chunk back to disk.

    pip install "fastrelu[dask]" zarr
    python docs/examples/dask_out_of_core.py [FOLDER]

Two worker processes of 400 MiB each (800 MiB in all) go through 2**27
float32 elements of ``x`` and of ``grad``: 1 GiB of input, and 512 MiB of
result.  The stores are written to FOLDER (default: a temporary folder).
"""

import sys
import tempfile
from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from dask.distributed import Client, LocalCluster

import fastrelu


def make_inputs(folder, size, chunk):
    """Write random ``x`` and ``grad`` Zarr stores of *size* float32 elements
    in chunks of *chunk*, generated chunk by chunk by the workers."""
    for name, seed in (("x", 0), ("grad", 1)):
        values = da.random.default_rng(seed).standard_normal(
            size, chunks=chunk, dtype=np.float32
        )
        # Exact zeros, where the subgradient at zero shows.
        values = da.where(abs(values) < 0.01, np.float32(0), values)
        da.to_zarr(values, str(folder / f"{name}.zarr"), overwrite=True)


def relu_backward_on_disk(folder, at_zero=0.0):
    """``relu_backward`` of the stores ``x`` and ``grad`` in *folder*, into
    the store ``result``, one chunk at a time."""
    x = da.from_zarr(str(folder / "x.zarr"))
    grad = da.from_zarr(str(folder / "grad.zarr"))
    result = zarr.create_array(
        str(folder / "result.zarr"),
        shape=x.shape,
        chunks=x.chunksize,
        dtype=x.dtype,
        compressors=None,
        overwrite=True,
    )
    # Each task writes its own chunk of the result, so no lock is needed.
    da.store(
        fastrelu.relu_backward(x, grad, at_zero=at_zero), result, lock=False
    )
    return result


def check_on_disk(folder, at_zero=0.0):
    """Compare the result store with NumPy's ``where`` chunk by chunk;
    return the number of elements checked."""
    x, grad, result = (
        zarr.open_array(str(folder / f"{n}.zarr"), mode="r")
        for n in ("x", "grad", "result")
    )
    step = result.chunks[0]
    for lo in range(0, result.shape[0], step):
        xs, gs = x[lo : lo + step], grad[lo : lo + step]
        want = np.where(
            xs > 0,
            gs,
            np.where(xs == 0, np.float32(at_zero) * gs, np.float32(0)),
        )
        np.testing.assert_array_equal(result[lo : lo + step], want)
    return result.shape[0]


def main(folder):
    size, chunk, memory = 1 << 27, 1 << 21, "400MiB"
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            memory_limit=memory,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
    ):
        make_inputs(folder, size, chunk)
        relu_backward_on_disk(folder, at_zero=0.5)
    n = check_on_disk(folder, at_zero=0.5)
    gib = 2 * n * 4 / 2**30
    print(
        f"relu_backward over {gib:.1f} GiB of inputs on disk with 2 workers "
        f"of {memory}: {n} elements checked"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
