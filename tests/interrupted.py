"""A child process for tests/test_interrupts.py: calls interrupted at random
moments by a KeyboardInterrupt, and what they leave behind.

    python tests/interrupted.py SCENARIO REPETITIONS SEED

prints one line of JSON.  A timer (``setitimer``) raises KeyboardInterrupt
on the main thread at a random moment of each repetition's call; after each
one, a call made on another thread must end within ``NEXT_CALL_SECONDS``,
or the child reports the hang and exits at once.
"""

import json
import os
import random
import signal
import sys
import threading
import time

import numpy as np

import fastrelu
from fastrelu import _front, _kernels, _pool, _threads

NEXT_CALL_SECONDS = 60


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _report(**fields):
    print(json.dumps(fields), flush=True)


def _hang(rep, what):
    import faulthandler

    _report(hang=f"{what} at repetition {rep}")
    faulthandler.dump_traceback(all_threads=True)
    os._exit(3)


def _next_call_works(rep, x, g):
    """relu_backward on another thread (so that locks left taken by the main
    thread count too) ends, and right."""
    done = []
    worker = threading.Thread(
        target=lambda: done.append(fastrelu.relu_backward(x, g, at_zero=0.5)), daemon=True
    )
    worker.start()
    worker.join(NEXT_CALL_SECONDS)
    if not done:
        _hang(rep, "the next call")
    expected = np.where(x > 0, g, np.where(x == 0, g * np.float32(0.5), np.float32(0)))
    return bool(np.array_equal(done[0], expected))


def _interrupted(call, delay):
    """Run *call* with a KeyboardInterrupt due after *delay* seconds; whether
    it came before the call was over."""
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, delay)
            call()
            signal.setitimer(signal.ITIMER_REAL, 0)
        except KeyboardInterrupt:
            return True
    except KeyboardInterrupt:  # due just as the first handler ran
        return True
    return False


def _seconds(call, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def threaded(reps, rng):
    """Calls split across threads (2**21 float32 elements), interrupted."""
    fastrelu.set_num_threads(max(2, fastrelu.get_num_threads()))
    data = np.random.default_rng(0)
    x = (data.standard_normal(2**21) * 3).round().astype(np.float32)  # exact zeros too
    g = data.standard_normal(2**21).astype(np.float32)
    expected = np.where(x > 0, g, np.where(x == 0, g * np.float32(0.5), np.float32(0)))
    out = np.empty_like(x)

    def call():
        fastrelu.relu_backward(x, g, out=out, at_zero=0.5)

    jobs = _pool.jobs()
    duration = _seconds(call)
    split = _pool.jobs() > jobs
    interrupted = late = mixed = wrong = untouched = complete = 0
    for rep in range(reps):
        out[:] = np.nan  # no result is NaN: NaN marks what the call did not write
        if _interrupted(call, rng.uniform(0, 1.5 * duration)):
            interrupted += 1
            seen = out.copy()
            time.sleep(max(4 * duration, 0.002))
            late += not np.array_equal(seen, out, equal_nan=True)
            written = ~np.isnan(seen)
            wrong += not np.array_equal(seen[written], expected[written])
            untouched += not written.any()
            complete += bool(written.all())
            mixed += bool(written.any() and not written.all())
        if not _next_call_works(rep, x[:70000], g[:70000]):
            wrong += 1
    _report(
        interrupted=interrupted,
        late_writes=late,
        untouched=untouched,
        complete=complete,
        partly_written=mixed,
        wrong=wrong,
        split=split,
        seconds=duration,
    )


def compiles(reps, rng):
    """First calls, loading the kernels from the disk cache (or compiling),
    interrupted: this module's lock, the cache folder's, Numba's and
    llvmlite's are taken then."""
    x = np.arange(-3, 4, dtype=np.float32)
    g = np.ones(7, np.float32)

    def forget():
        _kernels._compiled.clear()
        _kernels._dispatchers.clear()
        for table in _front.FAST.values():
            table.clear()

    def call():
        fastrelu.relu_backward(x, g, at_zero=0.5)

    call()  # in the cache from here on
    forget()
    duration = _seconds(lambda: (forget(), call()), repeat=3)
    interrupted = wrong = 0
    for rep in range(reps):
        forget()
        interrupted += _interrupted(call, rng.uniform(0, 1.2 * duration))
        if not _next_call_works(rep, x, g):
            wrong += 1
    _report(interrupted=interrupted, wrong=wrong, seconds=duration)


def grows(reps, rng):
    """Calls that make the pool's workers, interrupted: each worker made
    exactly once, each serving its own slot."""
    x = np.random.default_rng(1).standard_normal(2**16).astype(np.float32)
    fastrelu.config.set(parallel_min_size={"relu": 0}, parallel_min_chunk=64)
    pool = _pool.get()
    fastrelu.set_num_threads(2)
    fastrelu.relu(x)  # compiled, and the first worker made, before the interrupts
    interrupted = 0
    for rep in range(reps):
        fastrelu.set_num_threads(rep + 3)
        interrupted += _interrupted(lambda: fastrelu.relu(x), rng.uniform(0, 0.002))
        if not _next_call_works(rep, x, x):
            _report(wrong=1)
            return
    fastrelu.relu(x)  # makes what an interrupt kept from being made
    names = [t.name for t in threading.enumerate() if t.name.startswith("fastrelu-") and t.name[9:].isdigit()]
    _report(
        interrupted=interrupted,
        workers=pool.workers,
        threads=len(names),
        distinct=len(set(names)),
        wanted=reps + 1,
    )


def shrinks(reps, rng):
    """The thread count lowered after calls on more threads, interrupted
    (in config.set, while the surplus workers end): the next call works,
    and in the end the workers left are those the count wants, each
    serving its own slot."""
    x = np.random.default_rng(2).standard_normal(2**16).astype(np.float32)
    fastrelu.config.set(parallel_min_size={"relu": 0}, parallel_min_chunk=64)
    pool = _pool.get()
    fastrelu.set_num_threads(4)
    fastrelu.relu(x)  # compiled, and workers made, before the interrupts
    fastrelu.set_num_threads(2)  # and the code that ends them compiled
    interrupted = 0
    for rep in range(reps):
        high = rng.randint(3, 8)
        fastrelu.set_num_threads(high)
        fastrelu.relu(x)  # the workers made
        low = rng.randint(1, high - 1)
        interrupted += _interrupted(lambda: fastrelu.config.set(num_threads=low), rng.uniform(0, 0.002))
        if not _next_call_works(rep, x, x):
            _report(wrong=1)
            return
    fastrelu.set_num_threads(3)  # after the changes an interrupt left running
    fastrelu.relu(x)
    names = [t.name for t in threading.enumerate() if t.name.startswith("fastrelu-") and t.name[9:].isdigit()]
    _report(
        interrupted=interrupted,
        workers=pool.workers,
        counted=int(_threads.settings[_threads.WORKERS]),
        threads=len(names),
        distinct=len(set(names)),
        wanted=2,
    )


if __name__ == "__main__":
    import faulthandler

    scenario, reps, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    signal.signal(signal.SIGALRM, _interrupt)
    # A call that never returns on the main thread: the stacks, and exit 1.
    faulthandler.dump_traceback_later(240, exit=True)
    scenarios = {"threaded": threaded, "compiles": compiles, "grows": grows, "shrinks": shrinks}
    scenarios[scenario](reps, random.Random(seed))
