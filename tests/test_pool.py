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
def threads():
    """fastrelu on *n* threads, splitting every call into small chunks."""
    everything = dict.fromkeys(KERNELS, 0)
    with config.set(
        parallel_min_chunk=64, parallel_min_size=everything, num_threads=fastrelu.get_num_threads()
    ):
        yield fastrelu.set_num_threads


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
def test_outputs_written_past_the_caches_are_right(threads, name, dtype, n_threads):
    """Outputs of STREAM_MIN_BYTES or more are computed into a buffer and
    written a cache line at a time with non-temporal stores; the ends, up to
    a line boundary, as usual.  Every offset of the output from a line."""
    threads(n_threads)
    rng = np.random.default_rng(4)
    cases = []
    for size in (5, 100, 5000, 20011):
        args = [(rng.standard_normal(size) * 5).astype(dtype) for _ in KERNELS[name].operands]
        cases.append((size, args, serial(name, args)))  # written the usual way
    with config.set(stream_min_bytes=64):
        for size, args, want in cases:
            for offset in range(0, 64 // np.dtype(dtype).itemsize, 3):
                out = np.full(size + offset, 7, dtype)[offset:]
                assert getattr(fastrelu, name)(*args, out=out) is out
                assert out.tobytes() == want.tobytes(), (size, offset)


@pytest.mark.parametrize("n", [1, 64, 1000, 4096, 10**5])
@pytest.mark.parametrize("n_threads", [1, 2, 5])
def test_plan(plan, n_threads, n):
    from fastrelu import _pool

    with config.set(parallel_min_chunk=256, num_threads=n_threads):
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


def test_plan_waits_for_workers_to_exist(plan):
    from fastrelu import _pool

    with config.set(num_threads=_pool.get().workers + 3):
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
        config.set(parallel_min_chunk=64, parallel_min_size={"relu_backward": 0}, num_threads=64)
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


# --------------------------------------------------------------------------
# Workers end when the thread count goes down


def worker_threads():
    """The names of this process's pool workers that are alive."""
    import re
    import threading

    return sorted(t.name for t in threading.enumerate() if re.fullmatch(r"fastrelu-\d+", t.name))


def named(k):
    return sorted(f"fastrelu-{i}" for i in range(1, k))


def test_lowering_the_thread_count_ends_the_surplus_workers(threads):
    """After a call on 6 threads, 3 leave 2 workers, 1 none, 4 three again:
    the workers ended are joined, their slots marked EXIT and their locks
    freed; calls stay right and split over the threads that remain."""
    from fastrelu import _pool

    x = (np.random.default_rng(5).standard_normal(100_000) * 3).astype(np.float32)
    want = serial("softplus", [x])

    def split_over():
        """The threads the next call is split over (0: not split)."""
        before = _pool.jobs()
        assert fastrelu.softplus(x).tobytes() == want.tobytes()
        return int(_pool._block[_pool.JOB]) & 0xFFFF if _pool.jobs() != before else 0

    def state(i):
        return int(_pool._block[_pool.WORKERS + 2 * i])

    threads(6)
    assert split_over() == 6 and worker_threads() == named(6)
    pool = _pool.get()
    made = list(pool._threads)
    threads(3)  # right after a call: the workers are spinning
    assert worker_threads() == named(3) and pool.workers == 2
    assert _threads.settings[_threads.WORKERS] == 2
    assert not any(t.is_alive() for t in made[2:]) and all(t.is_alive() for t in made[:2])
    assert [state(i) for i in range(2, 5)] == [_pool.EXIT] * 3
    assert all(_pool._block[_pool.WORKERS + 2 * i + 1] == 0 for i in range(2, 5))  # locks freed
    assert split_over() == 3
    time.sleep(0.2)  # far longer than the spin: both workers asleep
    assert [state(i) for i in range(2)] == [_pool.ASLEEP] * 2
    threads(1)  # sleeping workers are woken to end
    assert worker_threads() == [] and pool.workers == 0
    assert not any(t.is_alive() for t in made)
    assert split_over() == 0
    threads(4)
    assert split_over() == 4 and worker_threads() == named(4)
    assert all(state(i) in (_pool.AWAKE, _pool.ASLEEP) for i in range(3))
    assert not set(pool._threads) & set(made)  # new threads in the old slots
    threads(8)  # raising makes no worker before a call needs one
    assert worker_threads() == named(4)


def test_leaving_a_block_with_fewer_threads_ends_workers(threads):
    from fastrelu import _pool

    x = np.linspace(-3, 3, 50_000, dtype=np.float32)
    threads(2)
    with config.set(num_threads=5):
        fastrelu.relu(x)
        assert worker_threads() == named(5)
    assert worker_threads() == named(2) and _pool.get().workers == 1


def test_thread_counts_going_up_and_down_under_calls_from_many_threads():
    """50 changes of the thread count, up and down, while 4 Python threads
    split calls: every result right, nothing hangs, the workers left are
    those the last count wants, and a child forked afterwards works."""
    out = run_child("""
        import os, re, threading, time
        import numpy as np, fastrelu
        from fastrelu import _pool, _threads, config

        def workers():
            return sorted(t.name for t in threading.enumerate() if re.fullmatch(r"fastrelu-\\d+", t.name))

        config.set(parallel_min_size=dict.fromkeys(config.PARALLEL_MIN_SIZE, 0), parallel_min_chunk=64)
        rng = np.random.default_rng(2)
        xs = [(rng.standard_normal(20_000 + 1000 * i) * 4).astype(np.float32) for i in range(4)]
        with _threads.limit(1):
            wants = [(fastrelu.relu(x), fastrelu.softplus(x)) for x in xs]
        stop, failures, calls = threading.Event(), [], [0] * 4

        def work(i):
            try:
                while not stop.is_set():
                    relu, softplus = wants[i]
                    if fastrelu.relu(xs[i]).tobytes() != relu.tobytes():
                        failures.append(("relu", i))
                    if fastrelu.softplus(xs[i]).tobytes() != softplus.tobytes():
                        failures.append(("softplus", i))
                    calls[i] += 1
            except BaseException as error:
                failures.append(repr(error))

        callers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in callers:
            t.start()
        counts = np.random.default_rng(3).integers(1, 7, 50)
        jobs = _pool.jobs()
        for n in counts:
            fastrelu.set_num_threads(int(n))
            time.sleep(0.002)
        time.sleep(0.05)
        stop.set()
        for t in callers:
            t.join(60)
        assert not any(t.is_alive() for t in callers), "a caller hung"
        assert not failures, failures[:5]
        assert min(calls) > 0 and _pool.jobs() != jobs, (calls, _pool.jobs() - jobs)
        assert _pool.get().workers <= counts[-1] - 1
        fastrelu.set_num_threads(3)
        fastrelu.relu(xs[0])
        assert workers() == ["fastrelu-1", "fastrelu-2"], workers()
        pid = os.fork()
        if pid == 0:  # the child's own pool, up and down
            ok = True
            for n in (4, 2, 1, 3):
                fastrelu.set_num_threads(n)
                ok &= fastrelu.softplus(xs[1]).tobytes() == wants[1][1].tobytes()
                ok &= len(workers()) == n - 1
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the forked child failed"
        fastrelu.set_num_threads(1)
        assert workers() == [] and fastrelu.relu(xs[0]).tobytes() == wants[0][0].tobytes()
        print("ok", sum(calls))
    """)
    assert out.startswith("ok")
