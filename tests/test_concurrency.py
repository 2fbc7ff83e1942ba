"""Concurrency: many Python threads, many processes, one on-disk cache, fork.

The requirement: calls from many threads at once work and give right results;
processes that start at once on an empty cache, processes with different
thread counts sharing one cache, and a ``multiprocessing`` pool forked after
the parent ran the parallel path all work, with no crash and no hang; and a
second process loads the compiled kernels from disk instead of compiling.

Every result is compared with an independent NumPy reference: bit for bit
for relu and relu_backward, within a few ULP of a long-double formula for
softplus and softplus_backward.  The checking code (``_inputs`` to
``_child_main``) is written once and used both here and, as source text, in
the fresh interpreters the process tests start.
"""

import hashlib
import inspect
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import fastrelu
import fastrelu.config

FUNCS = ("relu", "relu_backward", "softplus", "softplus_backward")
DTYPES = ("float32", "float64")
CHUNK = 1 << 16  # a unit of size: every kernel splits an array of a few of them
SPLIT_FROM = 1 << 17  # every kernel takes the thread-pool path from here in these tests
LARGE = (1 << 18) + 77  # > SPLIT_FROM: the thread-pool path, ragged tail
SMALL = 1000  # the serial path
TIMEOUT = 120  # seconds, for every child process, thread join and pool result


# --------------------------------------------------------------------------
# Checking code, shipped verbatim to child interpreters (see _CHILD_SOURCE):
# it may use only hashlib, json, multiprocessing, os, sys, threading, time,
# np, fastrelu and the constants TIMEOUT and ULPS.


def _inputs(dtype, n, seed):
    """Deterministic x (with 0, -0, +-inf and NaN in it) and grad."""
    rng = np.random.default_rng(seed)
    x = np.clip(rng.standard_normal(n) * 8.0, -40.0, 40.0).astype(dtype)
    specials = np.resize(np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype), min(n, 10))
    x[np.linspace(0, n - 1, specials.size).astype(np.intp)] = specials
    g = rng.standard_normal(n).astype(dtype)
    return x, g


def _reference(func, x, g, beta=1.0, threshold=None, at_zero=0.0):
    """NumPy's answer: exact for relu*, in long double for softplus*."""
    T = x.dtype.type
    with np.errstate(all="ignore"):
        if func == "relu":
            ref = np.maximum(x, T(0))
            ref[ref == 0] = 0  # -0.0 -> +0.0
            return ref
        if func == "relu_backward":
            at_x0 = T(at_zero) * g if at_zero else np.zeros_like(g)
            return np.where(x > 0, g, np.where(x == 0, at_x0, np.where(np.isnan(x), x, T(0))))
        L = np.longdouble
        b = L(beta)
        t = b * x.astype(L)
        if func == "softplus":
            ref = (np.maximum(t, 0) + np.log1p(np.exp(-np.abs(t)))) / b
            passthrough = x.astype(L)
        else:
            ref = g.astype(L) / (1 + np.exp(-t))
            passthrough = g.astype(L)
        if threshold is not None:
            ref = np.where(T(beta) * x > T(threshold), passthrough, ref)
        return ref


def _mismatches(func, out, ref):
    """Indices where *out* is not *ref*: bit for bit for relu*, else within ULPS."""
    if func.startswith("relu"):
        if out.dtype != ref.dtype:
            return np.arange(out.size)
        u = f"u{out.dtype.itemsize}"
        return np.flatnonzero(out.view(u) != ref.view(u))
    L = np.longdouble
    with np.errstate(all="ignore"):
        bad = np.isnan(out) != np.isnan(ref)
        bad |= np.isinf(ref) & (out.astype(L) != ref)
        err = np.abs(out.astype(L) - ref)
        tol = ULPS * np.spacing(np.abs(ref.astype(out.dtype))).astype(L)
        bad |= np.isfinite(ref) & ~(err <= tol)
    return np.flatnonzero(bad)


def _run_job(job):
    """Compute one call and check it; return ``(errors, digest of the result)``."""
    func, dtype, n, seed, params, use_out = job
    x, g = _inputs(dtype, n, seed)
    x0, g0 = x.copy(), g.copy()
    kwargs = {}
    if func == "relu_backward":
        kwargs["at_zero"] = params.get("at_zero", 0.0)
    elif func.startswith("softplus"):
        kwargs["beta"] = params.get("beta", 1.0)
        kwargs["threshold"] = params.get("threshold")
    args = (x,) if func in ("relu", "softplus") else (x, g)
    what = f"{func}({dtype}, n={n}, {kwargs!r}, out={use_out})"
    try:
        out = np.full(n, 7, dtype) if use_out else None
        res = getattr(fastrelu, func)(*args, out=out, **kwargs)
        if use_out and res is not out:
            return [f"{what}: did not return out"], None
    except Exception as exc:  # noqa: BLE001 - reported, and the other calls go on
        return [f"{what} raised {exc!r}"], None
    errors = []
    if res.dtype != np.dtype(dtype) or res.shape != (n,):
        errors.append(f"{what}: result {res.dtype} {res.shape}")
    elif not (np.array_equal(x, x0, equal_nan=True) and np.array_equal(g, g0)):
        errors.append(f"{what}: modified its inputs")
    else:
        bad = _mismatches(func, res, _reference(func, x, g, **kwargs))
        if bad.size:
            i = bad[0]
            errors.append(
                f"{what}: {bad.size} wrong elements, first at {i}: x={x[i]!r} grad={g[i]!r} got {res[i]!r}"
            )
    return errors, hashlib.sha256(res.tobytes()).hexdigest()


def _run_round(rnd):
    """Run ``rnd["threads"]`` (one job list per thread) in threads started by a
    barrier; return ``(errors, digests)``, digests one list per thread."""
    if rnd.get("num_threads"):
        fastrelu.set_num_threads(rnd["num_threads"])
    job_lists = rnd["threads"]
    barrier = threading.Barrier(len(job_lists))
    results = [None] * len(job_lists)

    def work(i):
        errors, digests = [], []
        try:
            barrier.wait(TIMEOUT)
            for job in job_lists[i]:
                err, digest = _run_job(job)
                errors += [f"thread {i}: {e}" for e in err]
                digests.append(digest)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(f"thread {i}: {exc!r}")
        results[i] = (errors, digests)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(job_lists))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    errors = [f"thread {i} hung" for i, t in enumerate(threads) if t.is_alive()]
    for res in results:
        if res is not None:
            errors += res[0]
    return errors, [res[1] if res else None for res in results]


def _compile_log():
    """What this process compiled, or loaded from the cache, in order."""
    from fastrelu import _kernels

    return _kernels.log


def _pool_task(jobs):
    """One task of a multiprocessing pool: run *jobs* and say how they ran."""
    from fastrelu import _pool

    errors, digests = [], []
    for job in jobs:
        err, digest = _run_job(job)
        errors += err
        digests.append(digest)
    return {
        "pid": os.getpid(),
        "errors": errors,
        "digests": digests,
        "num_threads": fastrelu.get_num_threads(),
        "pool_pid": _pool.get().pid,
    }


def _child_main(spec):
    """What a child interpreter does with its spec (see _run_children)."""
    if spec.get("go"):  # a barrier across processes: all start computing at once
        open(spec["ready"], "w").close()
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(spec["go"]):
            if time.monotonic() > deadline:
                raise SystemExit("no go signal")
            time.sleep(0.005)
    fastrelu.config.set(parallel_min_size=dict.fromkeys(fastrelu.config.PARALLEL_MIN_SIZE, SPLIT_FROM))
    if spec.get("min_chunk"):
        fastrelu.config.set(parallel_min_chunk=spec["min_chunk"])
    report = {"pid": os.getpid(), "errors": [], "digests": []}
    for rnd in spec.get("rounds", []):
        errors, digests = _run_round(rnd)
        report["errors"] += errors
        report["digests"].append(digests)
    if spec.get("pool"):
        method, processes, jobs = spec["pool"]
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(processes) as pool:
            async_result = pool.map_async(_pool_task, [jobs] * (2 * processes), chunksize=1)
            report["pool"] = async_result.get(timeout=TIMEOUT / 2)
        # and the parent still works afterwards, on the parallel path too
        report["pool_parent"] = _pool_task(jobs)
    report["num_threads"] = fastrelu.get_num_threads()
    report["log"] = _compile_log()
    return report


# --------------------------------------------------------------------------

# Tolerance of softplus*: a few ULP of a long-double reference, or of a
# double one where long double is double.
ULPS = 4 if np.finfo(np.longdouble).eps < np.finfo(np.float64).eps else 8

_SHIPPED = (
    _inputs,
    _reference,
    _mismatches,
    _run_job,
    _run_round,
    _compile_log,
    _pool_task,
    _child_main,
)
_CHILD_SOURCE = "\n\n".join(
    [
        (
            "import hashlib, json, multiprocessing, os, sys, threading, time\n"
            "import numpy as np\n"
            "import fastrelu, fastrelu.config\n\n"
            f"TIMEOUT = {TIMEOUT!r}\nULPS = {ULPS!r}\nSPLIT_FROM = {SPLIT_FROM!r}"
        ),
        *(inspect.getsource(f) for f in _SHIPPED),
        'if __name__ == "__main__":\n    print(json.dumps(_child_main(json.loads(sys.argv[1]))))\n',
    ]
)

# Environment variables of the parent that children must not inherit.
_CHILD_ENV_DROP = ("FASTRELU_NUM_THREADS", "FASTRELU_CACHE", "NUMBA_NUM_THREADS", "NUMBA_CACHE_DIR")


def _run_children(tmp_path, specs, *, at_once=True):
    """Run one fresh interpreter per ``(env, spec)`` of *specs*; return their reports.

    With *at_once* the children are started together and wait for each other
    (after importing fastrelu) before computing; otherwise one after another.
    Every child must exit 0 within TIMEOUT.
    """
    if not at_once:
        return [r for s in specs for r in _run_children(tmp_path, [s], at_once=True)]
    script = tmp_path / "child.py"
    script.write_text(_CHILD_SOURCE)
    run_id = f"{os.getpid()}-{time.monotonic_ns()}"
    go = tmp_path / f"go-{run_id}"
    base_env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROP}
    procs = []
    try:
        for i, (env, spec) in enumerate(specs):
            spec = dict(spec, ready=str(tmp_path / f"ready-{run_id}-{i}"), go=str(go))
            log = tmp_path / f"child-{run_id}-{i}"
            with (
                open(log.with_suffix(".out"), "w") as out,
                open(log.with_suffix(".err"), "w") as err,
            ):
                proc = subprocess.Popen(
                    [sys.executable, str(script), json.dumps(spec)],
                    env={**base_env, **env},
                    stdout=out,
                    stderr=err,
                    cwd=str(tmp_path),
                )
            procs.append((proc, log, spec))
        deadline = time.monotonic() + TIMEOUT
        for proc, _, spec in procs:
            while not os.path.exists(spec["ready"]):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        go.touch()
        reports = []
        for proc, log, _ in procs:
            try:
                rc = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"child {proc.pid} hung: {_tail(log)}")
            out = log.with_suffix(".out").read_text().strip()
            assert rc == 0, f"child exited {rc}: {_tail(log)}"
            reports.append(json.loads(out.splitlines()[-1]))
        return reports
    finally:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _tail(log):
    return log.with_suffix(".err").read_text()[-3000:]


def _no_errors(reports):
    errors = [e for r in reports for e in r["errors"]]
    errors += [e for r in reports for p in r.get("pool", []) for e in p["errors"]]
    assert not errors, "\n".join(errors[:20])


def _cache_files(cache_dir):
    """``{path: (size, mtime_ns)}`` of Numba's index and data files under *cache_dir*."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in cache_dir.rglob("*")
        if p.suffix in (".nbi", ".nbc")
    }


def _job(func, dtype, n, seed, i=0, use_out=False):
    """A job with the keyword arguments varied by *i*."""
    params = {
        "beta": (1.0, 2.0, 0.5, 3.0)[i % 4],
        "threshold": (None, 20.0)[i % 2],
        "at_zero": (0.0, 1.0, 0.5)[i % 3],
    }
    return [func, dtype, n, seed, params, use_out]


def _jobs(pairs, sizes=(LARGE, SMALL), seed=0):
    """One job per (func, dtype) of *pairs* and size."""
    return [_job(f, d, n, seed + k) for f, d in pairs for k, n in enumerate(sizes)]


def _thread_round(num_threads, n_threads=8, dtypes=DTYPES):
    """*n_threads* threads, each calling all four functions (in its own order)
    on arrays of its own size (2 to *num_threads* chunks) and a small one,
    with its own dtype and keyword arguments."""
    job_lists = []
    for i in range(n_threads):
        dtype = dtypes[i % len(dtypes)]
        chunks = 2 + i % max(1, num_threads - 1)
        order = FUNCS[i % 4 :] + FUNCS[: i % 4]
        jobs = []
        for k, func in enumerate(order):
            jobs.append(_job(func, dtype, chunks * CHUNK + 77, 100 * i + k, i, use_out=k % 2 == 0))
            jobs.append(_job(func, dtype, SMALL, 100 * i + k + 50, i + 1, use_out=k % 2 == 1))
        job_lists.append(jobs)
    return {"num_threads": num_threads, "threads": job_lists}


@pytest.fixture(autouse=True)
def split_every_kernel_from_the_same_size():
    with fastrelu.config.set(parallel_min_size=dict.fromkeys(fastrelu.config.PARALLEL_MIN_SIZE, SPLIT_FROM)):
        yield


@pytest.mark.skipif(fastrelu.get_num_threads() == 1, reason="one thread: nothing is split")
def test_large_arrays_here_take_the_thread_pool_path():
    from fastrelu import _pool

    for func in FUNCS:
        for n, split in ((LARGE, True), (SMALL, False)):
            before = _pool.jobs()
            _run_job(_job(func, "float32", n, 0))
            assert (_pool.jobs() > before) == split, (func, n)


@pytest.fixture
def restore_num_threads():
    saved = fastrelu.get_num_threads()
    yield saved
    fastrelu.set_num_threads(saved)


# --------------------------------------------------------------------------
# 1. Many Python threads in one process


@pytest.mark.parametrize("num_threads", [2, 8])
def test_many_threads_at_once(restore_num_threads, num_threads):
    """8 threads call all four functions at once, large and small arrays,
    float32 and float64, each with its own keyword arguments and checks."""
    errors, digests = _run_round(_thread_round(num_threads))
    assert not errors, "\n".join(errors[:20])
    assert all(d is not None and None not in d for d in digests)


def test_num_threads_does_not_change_results(restore_num_threads):
    """set_num_threads(1), the default and other counts give identical bits."""
    default = restore_num_threads
    for func in FUNCS:
        for dtype in DTYPES:
            job = _job(func, dtype, 3 * CHUNK + 77, 7, 1)
            digests = set()
            for n in (1, default, 3, 8):
                fastrelu.set_num_threads(n)
                errors, digest = _run_job(job)
                assert not errors, errors
                digests.add(digest)
            assert len(digests) == 1, (func, dtype)


def _growth_rounds(min_chunk, steps=range(8, 65, 8), n_threads=8):
    """Rounds of *n_threads* threads after set_num_threads(T) for T in *steps*,
    thread i asking for more chunks than thread i - 1, all more than the
    previous round's T: fastrelu's thread pool must grow while in use."""
    rounds, prev = [], 1
    for t in steps:
        job_lists = []
        for i in range(n_threads):
            chunks = prev + 1 + i * (t - prev) // n_threads
            n = max(1 << 17, chunks * min_chunk) + 77
            job_lists.append([_job(FUNCS[i % 4], "float32", n, i, i, use_out=i % 2 == 0)])
        rounds.append({"num_threads": t, "threads": job_lists})
        prev = t
    return rounds


@pytest.mark.parametrize(
    "dtypes, steps",
    [
        pytest.param(("float32",), range(8, 17, 8), id="float32-to-16"),
        pytest.param(DTYPES, range(8, 65, 8), id="to-64", marks=pytest.mark.slow),
    ],
)
def test_many_threads_in_a_fresh_process(tmp_path, dtypes, steps):
    """Threads racing on the first compilation (empty cache), then on the
    growth of fastrelu's thread pool: up to 64 threads, made cheap by a
    smaller config.PARALLEL_MIN_CHUNK (4096 elements) in the child (in the
    default run float32 only, up to 16 threads)."""
    min_chunk = 1 << 12
    rounds = [_thread_round(3, dtypes=dtypes)] + _growth_rounds(min_chunk, steps)
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    (report,) = _run_children(tmp_path, [(env, {"rounds": rounds, "min_chunk": min_chunk})])
    _no_errors([report])
    assert report["num_threads"] == steps[-1]


# --------------------------------------------------------------------------
# 2. Processes started at once on one empty cache, then on the warm one


# Two functions in the default run (4 signatures, each child compiling all of
# them, two of one function at once); all four in -m slow.
@pytest.mark.parametrize(
    "funcs",
    [
        pytest.param(("relu", "softplus_backward"), id="two"),
        pytest.param(FUNCS, id="four", marks=pytest.mark.slow),
    ],
)
def test_processes_at_once_share_one_cache(tmp_path, funcs):
    cache = tmp_path / "cache"
    env = {"NUMBA_CACHE_DIR": str(cache)}
    pairs = [(f, d) for d in DTYPES for f in funcs]  # 4 or 8 signatures
    # Each child compiles 4 of them, overlapping, in its own order: several
    # processes compile different signatures of one function at once.
    first = []
    for i in range(4):
        mine = [pairs[(3 * i + k) % len(pairs)] for k in range(4)]
        first.append(mine[::-1] if i % 2 else mine)
    reports = _run_children(
        tmp_path,
        [(env, {"rounds": [{"threads": [_jobs(p, seed=i)]}]}) for i, p in enumerate(first)],
    )
    _no_errors(reports)
    files = _cache_files(cache)
    everything = {e["key"] for r in reports for e in r["log"]}
    assert sum(k.startswith("('chunk'") for k in everything) == len(pairs), sorted(everything)
    # Compile-and-save is serialised across processes: each piece of code
    # was compiled by one process, loaded from disk by the others, and
    # saved in one data file.
    compiled = [e["key"] for r in reports for e in r["log"] if not e["loaded"]]
    assert sorted(compiled) == sorted(everything)
    assert sum(p.endswith(".nbc") for p in files) == len(everything), sorted(files)

    # Second wave, on the warm cache: everything loaded, nothing compiled.
    second = [(env, {"rounds": [{"threads": [_jobs(pairs[i:] + pairs[:i], seed=10 + i)]}]}) for i in range(4)]
    reports = _run_children(tmp_path, second)
    _no_errors(reports)
    for r in reports:
        assert r["log"] and all(e["loaded"] for e in r["log"]), r["log"]
        assert sum(e["key"].startswith("('chunk'") for e in r["log"]) == len(pairs)
    assert _cache_files(cache) == files  # nothing written again


# --------------------------------------------------------------------------
# 3. Processes with different thread counts sharing one cache

_THREAD_ENVS = [
    {"FASTRELU_NUM_THREADS": "1"},
    {"FASTRELU_NUM_THREADS": "2"},
    {"FASTRELU_NUM_THREADS": "3"},
    {"NUMBA_NUM_THREADS": "1"},
    {"NUMBA_NUM_THREADS": "2"},
]


# The default run: one thread, set by each variable, against the default
# count; -m slow: all five.
@pytest.mark.parametrize(
    "envs",
    [
        pytest.param(_THREAD_ENVS[::3], id="two"),
        pytest.param(_THREAD_ENVS, id="five", marks=pytest.mark.slow),
    ],
)
def test_processes_with_different_thread_counts(tmp_path, envs):
    cache = str(tmp_path / "cache")
    pairs = [("relu", "float32"), ("softplus_backward", "float64")]
    jobs = _jobs(pairs, sizes=(3 * CHUNK + 77, SMALL))
    specs = [({"NUMBA_CACHE_DIR": cache, **e}, {"rounds": [{"threads": [jobs]}]}) for e in envs]
    one_by_one = _run_children(tmp_path, specs, at_once=False)
    at_once = _run_children(tmp_path, specs)
    reports = one_by_one + at_once
    _no_errors(reports)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for env, r in zip(envs * 2, reports, strict=True):
        assert r["num_threads"] == int(env.get("FASTRELU_NUM_THREADS", cpus)), env
    # the same bits whatever the thread count
    assert len({json.dumps(r["digests"]) for r in reports}) == 1
    # nothing was compiled twice: every process after the first to need a
    # piece of code loaded it from the cache
    compiled = [e["key"] for r in reports for e in r["log"] if not e["loaded"]]
    assert compiled and len(compiled) == len(set(compiled)), compiled
    assert all(e["loaded"] for r in at_once for e in r["log"])


# --------------------------------------------------------------------------
# 4. multiprocessing pools, forked after the parent ran the parallel path


def _parallel_jobs():
    return _jobs([("relu", "float32"), ("softplus", "float64")], sizes=(LARGE,), seed=3)


def test_fork_pool_after_parallel_path_in_process(restore_num_threads):
    """Fork this (multi-threaded) test process after it used the thread pool."""
    fastrelu.set_num_threads(2)
    jobs = _parallel_jobs()
    parent = _pool_task(jobs)
    assert not parent["errors"] and parent["pool_pid"] == os.getpid()
    ctx = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process
        with ctx.Pool(2) as pool:
            children = pool.map_async(_pool_task, [jobs] * 4, chunksize=1).get(timeout=TIMEOUT / 2)
    _check_pool_reports(children, parent, os.getpid())
    assert _pool_task(jobs)["digests"] == parent["digests"]


# -m slow; the default run forks a pool in test_fork_pool_after_parallel_path_in_process.
@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_after_parallel_path_in_fresh_process(tmp_path, method):
    """A fresh process runs the parallel path, then a pool whose workers do too."""
    jobs = _parallel_jobs()
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "FASTRELU_NUM_THREADS": "2"}
    spec = {"rounds": [{"threads": [jobs]}], "pool": [method, 2, jobs]}
    (report,) = _run_children(tmp_path, [(env, spec)])
    _no_errors([report])
    parent = report["pool_parent"]
    assert not parent["errors"] and parent["digests"] == report["digests"][0][0]
    _check_pool_reports(report["pool"], parent, report["pid"])


def _check_pool_reports(children, parent, parent_pid):
    assert len(children) >= 2
    for child in children:
        assert not child["errors"], child["errors"]
        assert child["pid"] != parent_pid
        assert child["num_threads"] >= 2
        assert child["pool_pid"] == child["pid"]  # the child's own thread pool
        assert child["digests"] == parent["digests"]


# --------------------------------------------------------------------------
# 5. No disk cache, and a cache folder that cannot be written


# -m slow; in the default run tests/test_cli.py and tests/test_table.py run
# with FASTRELU_CACHE=0.
@pytest.mark.slow
def test_cache_disabled(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {"NUMBA_CACHE_DIR": str(cache), "FASTRELU_CACHE": "0"}
    pairs = [("relu", "float64"), ("softplus_backward", "float32")]
    spec = {"rounds": [{"threads": [_jobs(pairs), _jobs(pairs[::-1])]}]}
    reports = _run_children(tmp_path, [(env, spec)] * 2)
    _no_errors(reports)
    for r in reports:
        assert r["log"] and all(e["cache_path"] is None and not e["loaded"] for e in r["log"])
    assert not list(cache.iterdir())


def test_cache_dir_not_writable(tmp_path):
    """NUMBA_CACHE_DIR below a regular file can never be created, even by root;
    Numba then falls back to another cache location or none."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    bad = afile / "sub"
    env = {"NUMBA_CACHE_DIR": str(bad), "XDG_CACHE_HOME": str(afile / "xdg")}
    pairs = [("relu_backward", "float32"), ("softplus", "float64")]
    spec = {"rounds": [{"threads": [_jobs(pairs), _jobs(pairs[::-1])]}]}
    reports = _run_children(tmp_path, [(env, spec)] * 2)
    _no_errors(reports)
    for r in reports:
        assert r["log"]
        for e in r["log"]:
            assert e["cache_path"] is None or not e["cache_path"].startswith(str(afile))
    assert afile.read_text() == "not a folder"


def _script_succeeds(code, timeout=120):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr


# _libm.py in the default run, every module in -m slow.
@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(name, marks=() if name == "_libm.py" else pytest.mark.exhaustive)
        for name in ("_loops.py", "_formulas.py", "_libm.py", "_native.py", "_pool.py")
    ],
)
def test_a_changed_module_makes_the_cache_stale(tmp_path, changed):
    """The loops inline code from other modules; editing any of them must
    recompile instead of loading the old machine code from the cache."""
    # A copy under another name, so that an editable install of fastrelu
    # cannot shadow it; the package imports itself only relatively.
    package = tmp_path / "fastrelu_copy"
    shutil.copytree(os.path.dirname(fastrelu.__file__), package, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path), NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    code = (
        "import numpy as np, fastrelu_copy as fastrelu; from fastrelu_copy import _kernels\n"
        "fastrelu.softplus(np.ones(3, np.float32))\n"
        "print(sum(not e['loaded'] for e in _kernels.log if \"'softplus'\" in e['key']))"
    )

    def misses():
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout)

    assert misses() == 1
    assert misses() == 0
    source = package / changed
    source.write_text(source.read_text() + "\n# edited\n")
    assert misses() == 1
    assert misses() == 0
    # An edit that keeps the file's size and modification time.
    stat = source.stat()
    text = source.read_text()
    source.write_text(text.replace("# edited", "# EDITED"))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert source.stat().st_size == stat.st_size and source.stat().st_mtime_ns == stat.st_mtime_ns
    assert misses() == 1
    assert misses() == 0


def test_no_cache_location_at_all_compiles_in_memory():
    """Where Numba finds no cache location, cache=True raises "no locator
    available"; fastrelu then compiles in memory instead of failing."""
    _script_succeeds("""
        import numba.core.caching as caching
        caching.CacheImpl._locator_classes = []  # no location anywhere
        import numpy as np, fastrelu
        from fastrelu import _kernels
        x = np.array([-1.0, 0.0, 2.0])
        assert fastrelu.relu(x).tolist() == np.maximum(x, 0).tolist()
        assert _kernels.log and all(e["cache_path"] is None for e in _kernels.log)
    """)


@pytest.mark.parametrize(
    "cache, forks",
    [
        pytest.param("1", 1, id="cache-once"),
        pytest.param("1", 3, id="cache", marks=pytest.mark.slow),
        pytest.param("0", 3, id="no-cache", marks=pytest.mark.slow),
    ],
)
def test_fork_while_another_thread_compiles(tmp_path, cache, forks):
    """A fork while another thread compiles (a cold first call): the child's
    first call computes instead of waiting forever for locks the compiling
    thread held (the cache folder's, Numba's compiler lock).  *forks* forks,
    each in the middle of a compile in a fresh cache folder (with the cache,
    which holds both locks, once in the default run)."""
    code = textwrap.dedent("""
        import os, threading, time, numpy as np, fastrelu
        started = threading.Event()
        def cold():
            started.set()
            fastrelu.softplus(np.ones(3, np.float32), beta=2.0)  # compiles for a second or more
        thread = threading.Thread(target=cold)
        thread.start()
        started.wait()
        time.sleep(0.05)
        pid = os.fork()
        if pid == 0:
            x = np.array([-1.0, 0.0, 2.0])
            ok = fastrelu.relu_backward(x, 3.0, at_zero=0.5).tolist() == [0.0, 1.5, 3.0]
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        thread.join()
        raise SystemExit(os.waitstatus_to_exitcode(status))
    """)
    for repetition in range(forks):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / f"cache{repetition}"), FASTRELU_CACHE=cache)
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90
        )
        assert proc.returncode == 0, proc.stderr


# In -m slow; in the default run, the second wave of
# test_processes_at_once_share_one_cache loads code that different processes
# compiled, each first thing.
@pytest.mark.slow
def test_code_compiled_by_different_processes_loads_side_by_side(tmp_path):
    """Numba numbers functions uniquely within one process only: two kernels'
    code, each compiled first thing by its own process, must not be taken
    for one another when a third process loads both from the cache."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    x = "np.linspace(-3, 3, 7)"
    calls = {
        "relu": f"fastrelu.relu({x}).tolist()",
        "softplus": f"fastrelu.softplus({x}).tolist()",
        "softplus_backward": f"fastrelu.softplus_backward({x}, 2.0).tolist()",
        "relu_backward": f"fastrelu.relu_backward({x}, 2.0, at_zero=0.5).tolist()",
    }

    def run(names):
        code = (
            "import json, numpy as np, fastrelu\n"
            + f"print(json.dumps([{', '.join(calls[n] for n in names)}]))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    alone = {name: run([name])[0] for name in calls}  # each compiles its own code
    together = run(list(calls))  # loads all of it
    assert together == [alone[name] for name in calls]
    xs = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(together[2], 2.0 / (1 + np.exp(-xs)), rtol=1e-14)


@pytest.mark.parametrize("runs", [1, pytest.param(5, marks=pytest.mark.slow)])
def test_daemon_threads_computing_at_exit_are_quiet(runs):
    """Daemon threads still in threaded calls when the interpreter exits: the
    process ends at once, with nothing on stderr (*runs* runs)."""
    code = textwrap.dedent("""
        import threading, time, numpy as np, fastrelu
        x = np.random.default_rng(0).standard_normal(2**21).astype(np.float32)
        def work():
            o = np.empty_like(x)
            while True:
                fastrelu.relu(x, out=o)
                fastrelu.softplus_backward(x, x, out=o)
        for _ in range(4):
            threading.Thread(target=work, daemon=True).start()
        time.sleep(0.5)
        print("exiting")
    """)
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "exiting\n", "")
