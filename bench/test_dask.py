"""fastrelu on Dask arrays against the same graph built from NumPy expressions.

    python bench/run.py -k dask                        # with the rest of the page
    FASTRELU_BENCH_DASK=24,20 python bench/run.py      # 2**24 elements in 2**20-element chunks

``relu_backward`` and ``softplus`` over 2**28 float32 elements in chunks of
2**24, on Dask's threaded scheduler and on a ``LocalCluster`` of one
single-threaded worker process per core.  Every graph has one task per chunk:
fastrelu's (``fastrelu.relu_backward(x, g)`` on Dask arrays), and the NumPy
expression mapped over the same chunks with ``da.map_blocks``.  fastrelu runs
twice: as shipped, each task's chunk on one thread
(``config.DASK_BLOCK_THREADS`` is 1), and with each chunk split over all of
fastrelu's threads as outside Dask (``config.set(dask_block_threads=None)``),
the measurement behind that default.  A round computes the graph
and keeps the result in memory (``persist``), on the scheduler's threads or
the cluster's workers, from inputs already there; the previous round's
result is freed before it, outside the timing.
"""

import os
import time

import numpy as np
import pytest

import fastrelu
from fastrelu import config

da = pytest.importorskip("dask.array")
from dask.graph_manipulation import clone  # noqa: E402 (after the skip)

DEFAULT = (28, 24)
ROUNDS = 5


def exponents_from_environment():
    """(total, chunk) exponents of 2, from ``FASTRELU_BENCH_DASK`` ("28,24")."""
    text = os.environ.get("FASTRELU_BENCH_DASK", "").strip()
    if not text:
        return DEFAULT
    try:
        total, chunk = (int(part) for part in text.split(","))
    except ValueError:
        total = chunk = -1
    if not 0 <= chunk <= total <= 32:
        raise ValueError(
            f"FASTRELU_BENCH_DASK must be 'total,chunk' exponents of 2, like '28,24'; got {text!r}"
        )
    return total, chunk


def numpy_graph(expression):
    """The NumPy expression mapped over the chunks: one task per chunk, as fastrelu's graph."""
    return lambda *arrays: da.map_blocks(expression, *arrays, dtype=arrays[0].dtype)


# key -> (the call as the table shows it, threads per block, graph of (x, g)).
IMPLEMENTATIONS = {
    "relu_backward": {
        "fastrelu": ("fastrelu.relu_backward(x, g)", 1, lambda x, g: fastrelu.relu_backward(x, g)),
        "fastrelu_all_threads": (
            "fastrelu.relu_backward(x, g)",
            None,
            lambda x, g: fastrelu.relu_backward(x, g),
        ),
        "numpy": ("np.where(x > 0, g, 0)", None, numpy_graph(lambda x, g: np.where(x > 0, g, 0))),
    },
    "softplus": {
        "fastrelu": ("fastrelu.softplus(x)", 1, lambda x, g: fastrelu.softplus(x)),
        "fastrelu_all_threads": ("fastrelu.softplus(x)", None, lambda x, g: fastrelu.softplus(x)),
        "numpy": ("np.logaddexp(0, x)", None, lambda x, g: numpy_graph(lambda x: np.logaddexp(0, x))(x)),
    },
}
ARRAYS_READ = {"relu_backward": 2, "softplus": 1}
REFERENCES = {
    "relu_backward": lambda x, g: np.where(x > 0, g, 0),
    "softplus": lambda x, g: np.logaddexp(0, x),
}
CASES = [(op, key) for op, impls in IMPLEMENTATIONS.items() for key in impls]


class Scheduler:
    """Computes graphs, keeps their results where they were computed
    (*persist*), fetches a result (*fetch*) and frees one (*release*)."""

    def __init__(self, name, persist, fetch, release=lambda result: None):
        self.name, self.persist, self.fetch, self.release = name, persist, fetch, release
        total, chunk = exponents_from_environment()
        made = [
            da.random.default_rng(seed).standard_normal(2**total, chunks=2**chunk, dtype=np.float32)
            for seed in (0, 1)
        ]
        self.inputs = persist(*made)


@pytest.fixture(scope="module")
def threaded():
    import dask

    def persist(*arrays):
        return dask.persist(*arrays, scheduler="threads")

    return Scheduler("threads", persist, lambda a: a.compute(scheduler="sync"))


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=fastrelu.get_num_threads(),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):

        def persist(*arrays):
            kept = client.persist(list(arrays))
            distributed.wait(kept)
            return kept

        def chunks_held():
            return sum(client.run(lambda dask_worker: len(dask_worker.data)).values())

        def release(result):
            """Free *result*'s chunks on the workers, and wait until they are gone."""
            held = chunks_held()
            client.cancel(result)
            deadline = time.monotonic() + 10
            while chunks_held() > held - result.npartitions and time.monotonic() < deadline:
                time.sleep(0.01)

        yield Scheduler("LocalCluster", persist, lambda a: client.compute(a).result(), release)


def _run(benchmark, scheduler, op, key):
    """The benchmark of *op* by *key* on *scheduler*, the graph built with
    the threads per task of *key* in force."""
    label, threads, build = IMPLEMENTATIONS[op][key]
    x, g = scheduler.inputs

    kept = []

    def once():
        # New keys each round: a cluster would otherwise hand back the
        # results it still holds from the round before.
        (result,) = scheduler.persist(clone(build(x, g), omit=(x, g)))
        kept.append(result)

    def release():
        # Between rounds, untimed: a round must not pay for freeing the last one's result.
        while kept:
            scheduler.release(kept.pop())

    # One round outside the timing: compiles in every worker, and checks the result.
    once()
    head = scheduler.fetch(kept[0][:1024])
    want = REFERENCES[op](*(scheduler.fetch(a[:1024]).astype(np.float64) for a in (x, g)))
    np.testing.assert_allclose(head, want, rtol=1e-5, atol=1e-30)

    total, chunk = exponents_from_environment()
    benchmark.group = f"dask {op} float32 2**{total} {scheduler.name}"
    benchmark.extra_info.update(
        suite="dask",
        op=op,
        dtype="float32",
        size=2**total,
        chunk=2**chunk,
        scheduler=scheduler.name,
        impl=label,
        key=key,
        library=key.split("_")[0],
        block_threads="all" if threads is None else threads,
        bytes=(ARRAYS_READ[op] + 1) * 2**total * 4,
    )
    benchmark.pedantic(once, setup=release, rounds=ROUNDS, iterations=1)
    release()


@pytest.mark.parametrize("op, key", CASES)
def test_threaded_scheduler(benchmark, threaded, op, key):
    with config.set(dask_block_threads=IMPLEMENTATIONS[op][key][1]):
        _run(benchmark, threaded, op, key)


@pytest.mark.parametrize("op, key", CASES)
def test_local_cluster(benchmark, cluster, op, key):
    with config.set(dask_block_threads=IMPLEMENTATIONS[op][key][1]):
        _run(benchmark, cluster, op, key)
