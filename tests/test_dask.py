"""Dask arrays: lazy results computed block by block with fastrelu's kernels,
on the synchronous and threaded schedulers and on a local cluster of worker
processes, checked against NumPy on the same data."""

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from reference import LD, sigmoid_ld, softplus_ld

import fastrelu
from fastrelu import config

da = pytest.importorskip("dask.array")

EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3e38, -3e38, 20.0, 88.0, -104.0]


def numpy_reference(name, x, g, at_zero=0.0, beta=1.0, threshold=None):
    """The four functions in plain NumPy, in long double (so that ``beta * x``
    rounds far below float64's ULP), sharing nothing with fastrelu."""
    xl, gl = np.asarray(x, LD), np.asarray(g, LD)
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "relu":
            return np.where(xl > 0, xl, np.where(np.isnan(xl), np.nan, 0.0))
        if name == "relu_backward":
            return np.where(xl > 0, gl, np.where(xl == 0, at_zero * gl, np.where(xl < 0, 0.0, np.nan)))
        cut = beta * xl > (np.inf if threshold is None else threshold)  # PyTorch's cut-off
        if name == "softplus":
            return np.where(cut, xl, softplus_ld(x, beta))
        return np.where(cut, gl, gl * sigmoid_ld(x, beta))


CALLS = {
    "relu": (lambda x, g: fastrelu.relu(x), {}),
    "relu_backward": (lambda x, g: fastrelu.relu_backward(x, g, at_zero=0.25), {"at_zero": 0.25}),
    "softplus": (
        lambda x, g: fastrelu.softplus(x, beta=2.5, threshold=20.0),
        {"beta": 2.5, "threshold": 20.0},
    ),
    "softplus_backward": (lambda x, g: fastrelu.softplus_backward(x, g, beta=0.5), {"beta": 0.5}),
}


def data(shape=(50, 70), dtype=np.float32, seed=None):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 30).astype(dtype)
    x.flat[: len(EDGES)] = np.array(EDGES).astype(dtype)
    x.flat[len(EDGES) :: 17] = 0  # exact zeros, where at_zero shows
    return x, rng.standard_normal(shape).astype(dtype)


def assert_close_to_numpy(name, got, x, g, kwargs):
    """Against the NumPy reference: within a few ULP of got's dtype."""
    want = numpy_reference(name, x, g, **kwargs)
    got = np.asarray(got)
    assert got.shape == want.shape
    tol = 8 * np.finfo(got.dtype).eps
    with np.errstate(invalid="ignore", over="ignore"):
        ok = (got == want) | (np.isnan(got) & np.isnan(want)) | (np.abs(got - want) <= tol * np.abs(want))
        ok |= np.abs(got - want) <= np.finfo(got.dtype).smallest_subnormal * 4
    assert ok.all(), (x[~ok][:5], got[~ok][:5], want[~ok][:5])


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
@pytest.mark.parametrize("name", list(CALLS))
def test_all_four_on_local_schedulers(name, scheduler):
    call, kwargs = CALLS[name]
    x, g = data()
    dx, dg = da.from_array(x, chunks=(13, 30)), da.from_array(g, chunks=(25, 16))  # chunkings differ
    lazy = call(dx, dg)
    assert isinstance(lazy, da.Array)
    got = lazy.compute(scheduler=scheduler)
    want = call(x, g)
    assert lazy.dtype == want.dtype == got.dtype and type(lazy._meta) is np.ndarray
    np.testing.assert_array_equal(got, want)  # the same kernels, block by block
    assert_close_to_numpy(name, got, x, g, kwargs)


def test_keyword_arguments_travel_into_the_tasks():
    x, g = data()
    dx = da.from_array(x, chunks=17)
    for at_zero in (0.0, 0.5, 1.0):
        got = fastrelu.relu_backward(dx, g, at_zero=at_zero).compute()
        assert_close_to_numpy("relu_backward", got, x, g, {"at_zero": at_zero})
    for beta, threshold in ((1.0, None), (3.0, 5.0)):
        got = fastrelu.softplus(dx, beta=beta, threshold=threshold).compute()
        assert_close_to_numpy("softplus", got, x, g, {"beta": beta, "threshold": threshold})


def test_unequal_and_empty_chunks():
    x, g = data((40,), np.float64)
    dx = da.from_array(x, chunks=((0, 7, 0, 20, 13, 0),))
    dg = da.from_array(g, chunks=((25, 0, 15),))
    for name, (call, kwargs) in CALLS.items():
        got = call(dx, dg).compute()
        np.testing.assert_array_equal(got, call(x, g))
        assert_close_to_numpy(name, got, x, g, kwargs)


def test_empty_and_zero_dimensional_arrays():
    empty = da.zeros((0, 5), chunks=(0, 5), dtype=np.int16)
    got = fastrelu.relu(empty).compute()
    assert got.shape == (0, 5) and got.dtype == np.int16
    got = fastrelu.softplus_backward(da.from_array(np.float32(-0.0)), 2.0).compute()
    assert got.shape == () and got.dtype == np.float32 and got == 1.0


@pytest.mark.parametrize("grad_kind", ["numpy", "numpy row", "python float", "numpy scalar", "dask column"])
def test_broadcasting_between_dask_and_other_operands(grad_kind):
    x, g = data((30, 8), np.float32)
    grad = {
        "numpy": g,
        "numpy row": g[:1],
        "python float": 3.0,
        "numpy scalar": np.float64(3.0),
        "dask column": da.from_array(g[:, :1], chunks=(7, 1)),
    }[grad_kind]
    dx = da.from_array(x, chunks=(11, 3))
    for name in ("relu_backward", "softplus_backward"):
        func = getattr(fastrelu, name)
        lazy = func(dx, grad)
        host_grad = grad.compute() if isinstance(grad, da.Array) else grad
        want = func(x, host_grad)  # also NumPy's promotion: float64 for a NumPy float64 scalar
        assert lazy.dtype == want.dtype and lazy.shape == want.shape
        got = lazy.compute()
        np.testing.assert_array_equal(got, want)
        assert_close_to_numpy(name, got, x, np.broadcast_to(host_grad, x.shape), {})


def test_dask_grad_with_numpy_x():
    x, g = data((30,), np.float64)
    got = fastrelu.relu_backward(x, da.from_array(g, chunks=7), at_zero=1.0)
    assert isinstance(got, da.Array)
    np.testing.assert_array_equal(got.compute(), fastrelu.relu_backward(x, g, at_zero=1.0))


def test_errors_are_raised_when_the_graph_is_built():
    x, g = data((30,), np.float32)
    dx = da.from_array(x, chunks=7)
    out = np.zeros(30, np.float32)
    with pytest.raises(TypeError, match="out= is not supported with Dask arrays"):
        fastrelu.relu(dx, out=out)
    with pytest.raises(TypeError, match="out= is not supported with Dask arrays"):
        fastrelu.relu(x, out=da.zeros(30, chunks=7, dtype=np.float32))
    assert not out.any()
    with pytest.raises(TypeError, match="stream="):
        fastrelu.softplus(dx, stream=object())
    with pytest.raises(ValueError, match=r"at_zero must be a number in \[0, 1\], got 2"):
        fastrelu.relu_backward(dx, g, at_zero=2)
    with pytest.raises(ValueError, match="at_zero must be 0 or 1 for a result of integer dtype"):
        fastrelu.relu_backward(da.from_array(np.arange(5), chunks=2), 1, at_zero=0.5)
    with pytest.raises(ValueError, match="beta must be"):
        fastrelu.softplus_backward(dx, g, beta=-1.0)
    with pytest.raises(ValueError, match=r"cannot be broadcast together: shapes \(30,\), \(4,\)"):
        fastrelu.relu_backward(dx, np.ones(4))
    with pytest.raises(TypeError, match="not supported"):
        fastrelu.relu(da.from_array(np.array(["a", "b"]), chunks=1))
    with pytest.raises(ValueError, match="device must be"):
        fastrelu.relu(dx, device="tpu")


def test_tasks_run_serially_by_default():
    """A task's block does not fan out over fastrelu's threads unless
    ``config.DASK_BLOCK_THREADS`` allows it."""
    from fastrelu import _pool

    def splits(run):
        before = _pool.jobs()
        run()
        return _pool.jobs() - before

    big = da.from_array(np.linspace(-5, 5, 4 * config.PARALLEL_MIN_SIZE["softplus"]), chunks=-1)
    with config.set(num_threads=2):
        assert splits(lambda: fastrelu.softplus(big).compute(scheduler="sync")) == 0
        with config.set(dask_block_threads=None):
            assert splits(lambda: fastrelu.softplus(big).compute(scheduler="sync")) == 1
        assert splits(lambda: fastrelu.softplus(big).compute(scheduler="sync")) == 0
        assert splits(lambda: fastrelu.softplus(big.compute())) == 1  # outside Dask: all threads


# A local cluster: two worker processes on loopback, with small memory limits.
MEMORY_LIMIT = 400 * 2**20  # a worker holds about 250 MiB once it has compiled its kernels


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=MEMORY_LIMIT,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.mark.parametrize("name", list(CALLS))
def test_all_four_on_a_local_cluster(client, name):
    call, kwargs = CALLS[name]
    x, g = data((300, 200))
    dx, dg = da.from_array(x, chunks=(70, 90)), da.from_array(g, chunks=(100, 50))
    got = client.compute(call(dx, dg)).result()
    np.testing.assert_array_equal(got, call(x, g))
    assert_close_to_numpy(name, got, x, g, kwargs)
    # The tasks ran in both worker processes, which compiled the kernels themselves.
    workers = client.run(lambda: len(sys.modules["fastrelu._kernels"]._compiled))
    assert len(workers) == 2 and all(n >= 1 for n in workers.values())


def peak_memory():
    """This process's peak resident memory in bytes (Linux's VmHWM, which,
    unlike ``ru_maxrss``, does not carry over the parent's peak into a spawned
    worker)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _example():
    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "dask_out_of_core.py"
    spec = importlib.util.spec_from_file_location("dask_out_of_core", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "size, chunk, beyond_memory",
    [
        pytest.param(1 << 23, 1 << 19, False, id="64MiB"),
        pytest.param(1 << 27, 1 << 21, True, id="1GiB", marks=pytest.mark.slow),
    ],
)
def test_out_of_core_relu_backward_on_disk(client, tmp_path, size, chunk, beyond_memory):
    """The docs' example: 1 GiB of inputs in Zarr stores on disk, through two
    workers of 400 MiB, result written back with da.store, checked chunk by
    chunk (in the default run 64 MiB of inputs, which fit: the example's code
    without the out-of-core part)."""
    pytest.importorskip("zarr")
    if not os.path.exists("/proc/self/status"):
        pytest.skip("measures peak memory through Linux's /proc")
    example = _example()
    workers = client.run(os.getpid)
    # Whether the inputs do not fit in the workers' memory.
    assert (2 * size * 4 > 2 * MEMORY_LIMIT) == beyond_memory
    example.make_inputs(tmp_path, size, chunk)
    example.relu_backward_on_disk(tmp_path, at_zero=0.5)
    assert example.check_on_disk(tmp_path, at_zero=0.5) == size
    peaks = client.run(peak_memory)
    assert len(peaks) == 2 and max(peaks.values()) < MEMORY_LIMIT, peaks
    assert client.run(os.getpid) == workers  # and neither was restarted
