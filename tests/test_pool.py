"""fastrelu's thread pool: chunks claimed by the caller and the workers,
workers that sleep and are woken from compiled code, thread plans.

Every result is compared with the same call run serially (bit for bit: the
chunks of a split call compute exactly what one loop computes); the
concurrency of many callers, fork and spawn is in ``test_concurrency.py``.
"""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastrelu
from fastrelu import _threads, config
from fastrelu._table import KERNELS


@pytest.fixture
def threads(monkeypatch):
    """fastrelu on *n* threads, splitting every call into small chunks."""
    before = fastrelu.get_num_threads()
    monkeypatch.setattr(config, "PARALLEL_MIN_CHUNK", 64)
    for name in KERNELS:
        monkeypatch.setitem(config.PARALLEL_MIN_SIZE, name, 0)

    def use(n):
        fastrelu.set_num_threads(n)

    yield use
    fastrelu.set_num_threads(before)


def serial(name, args):
    with _threads.limit(1):
        return getattr(fastrelu, name)(*args)


@pytest.mark.parametrize("n_threads", [2, 3, 7])
@pytest.mark.parametrize("name", list(KERNELS))
def test_every_element_is_computed_once_whatever_the_split(threads, name, n_threads):
    threads(n_threads)
    rng = np.random.default_rng(n_threads)
    for size in (1, 63, 64, 65, 127, 129, 1000, 4097, 12345):
        args = [(rng.standard_normal(size) * 5).astype(np.float32) for _ in KERNELS[name].operands]
        want = serial(name, args)
        out = np.full(size, np.nan, np.float32)
        assert getattr(fastrelu, name)(*args, out=out) is out
        assert out.tobytes() == want.tobytes(), size


@pytest.fixture(scope="module")
def plan():
    """``_pool.plan`` compiled on its own: ``plan(size, request)``."""
    import numba

    from fastrelu import _pool

    @numba.njit
    def compiled(size, request):
        return _pool.plan(_pool.settings_address(), size, request)

    return compiled


@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int16"])
@pytest.mark.parametrize("name", [name for name, kernel in KERNELS.items() if kernel.streams])
def test_outputs_written_past_the_caches_are_right(threads, monkeypatch, name, dtype, n_threads):
    """Outputs of STREAM_MIN_BYTES or more are computed into a buffer and
    written a cache line at a time with non-temporal stores; the ends, up to
    a line boundary, as usual.  Every offset of the output from a line."""
    threads(n_threads)
    rng = np.random.default_rng(4)
    cases = []
    for size in (5, 100, 5000, 20011):
        args = [(rng.standard_normal(size) * 5).astype(dtype) for _ in KERNELS[name].operands]
        cases.append((size, args, serial(name, args)))  # written the usual way
    monkeypatch.setattr(config, "STREAM_MIN_BYTES", 64)
    for size, args, want in cases:
        for offset in range(0, 64 // np.dtype(dtype).itemsize, 3):
            out = np.full(size + offset, 7, dtype)[offset:]
            assert getattr(fastrelu, name)(*args, out=out) is out
            assert out.tobytes() == want.tobytes(), (size, offset)


@pytest.mark.parametrize("n", [1, 64, 1000, 4096, 10**5])
@pytest.mark.parametrize("n_threads", [1, 2, 5])
def test_plan(monkeypatch, plan, n_threads, n):
    from fastrelu import _pool

    monkeypatch.setattr(config, "PARALLEL_MIN_CHUNK", 256)
    monkeypatch.setattr(config, "_num_threads", n_threads)
    _pool.get().ready(n_threads)
    used, step = plan(n, _threads.request(1000))
    if n < 1000 or n_threads == 1:
        assert (used, step) == (1, n)
    else:
        assert 2 <= used <= min(n_threads, n // 256)
        assert step % 64 == 0 and step >= 256 // 2
        chunks = -(-n // step)
        assert used <= chunks <= used * _threads.CHUNKS_PER_THREAD
    assert plan(n, _threads.request(1000, cap=1)) == (1, n)  # a Dask task's cap
    with _threads.limit(2):  # another thread's cap: the call must ask Python
        assert plan(n, _threads.request(1000))[0] == (1 if n < 1000 else 0)


def test_plan_waits_for_workers_to_exist(monkeypatch, plan):
    from fastrelu import _pool

    monkeypatch.setattr(config, "_num_threads", _pool.get().workers + 3)
    assert plan(10**6, _threads.request(0)) == (0, 0)
    _pool.get().ready(config.get_num_threads())
    assert plan(10**6, _threads.request(0))[0] == config.get_num_threads()


def run_child(code, timeout=120):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(sys.platform != "linux", reason="reads per-thread CPU time from /proc")
def test_workers_sleep_when_idle_and_are_woken_to_work():
    """After a pause the worker is asleep (its state word says so); the next
    split call wakes it, and it computes part of the call (its thread's CPU
    time grows by milliseconds during a call of about 30 ms)."""
    out = run_child("""
        import os, time, numpy as np, fastrelu
        from fastrelu import _pool

        def cpu_ns(thread):
            with open(f"/proc/self/task/{thread.native_id}/schedstat") as f:
                return int(f.read().split()[0])

        fastrelu.set_num_threads(2)
        x = np.random.default_rng(0).standard_normal(2**24).astype(np.float32)
        want = fastrelu.softplus(x, device="cpu")
        import threading
        (worker,) = [t for t in threading.enumerate() if t.name == "fastrelu-1"]
        state = _pool.WORKERS  # worker 0's state word
        for _ in range(3):
            time.sleep(0.2)  # far longer than the spin
            assert _pool._block[state] == _pool.ASLEEP, "the worker did not go to sleep"
            before = cpu_ns(worker)
            got = fastrelu.softplus(x)
            assert got.tobytes() == want.tobytes()
            worked = cpu_ns(worker) - before
            assert worked > 2e6, f"the worker ran {worked} ns of the call"
        print("ok")
    """)
    assert out.strip() == "ok"


def test_a_call_never_waits_for_a_worker_that_is_late():
    """With many more workers than CPUs, most of them are never scheduled in
    time; every call still completes, correct, in bounded time."""
    out = run_child("""
        import time, numpy as np, fastrelu
        from fastrelu import config
        config.PARALLEL_MIN_CHUNK = 64
        config.PARALLEL_MIN_SIZE["relu_backward"] = 0
        fastrelu.set_num_threads(64)
        rng = np.random.default_rng(1)
        x, g = rng.standard_normal((2, 2**16)).astype(np.float32)
        want = np.where(x > 0, g, np.float32(0))
        start = time.monotonic()
        for _ in range(200):
            assert fastrelu.relu_backward(x, g).tobytes() == want.tobytes()
        print(time.monotonic() - start)
    """)
    assert float(out) < 60


def test_the_pool_is_used_by_one_call_at_a_time(threads):
    """A call that finds the pool busy runs on its own thread: many threads
    splitting calls at once all get their own results."""
    import threading

    threads(3)
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(50_000).astype(np.float32) for _ in range(6)]
    wants = [serial("softplus", [x]) for x in xs]
    failures = []

    def work(i):
        for _ in range(30):
            if fastrelu.softplus(xs[i]).tobytes() != wants[i].tobytes():
                failures.append(i)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in workers:
        t.start()
    deadline = time.monotonic() + 120
    for t in workers:
        t.join(max(0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in workers) and not failures
