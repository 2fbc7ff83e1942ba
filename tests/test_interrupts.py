"""Ctrl-C at any moment of a call: the next call works, and no thread of
fastrelu writes into ``out`` once the KeyboardInterrupt has reached the
caller.

Each scenario runs in a child process (tests/interrupted.py) with a time
limit, so a lock left taken fails the test instead of hanging it; a timer
raises KeyboardInterrupt at a random moment of each of many repetitions.
"""

import json
import os
import subprocess
import sys

import pytest

CHILD = os.path.join(os.path.dirname(__file__), "interrupted.py")
pytestmark = pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="needs setitimer")


# Each scenario runs a few tens of repetitions in the default run, 100 to
# 300 in -m slow (the parameter reps).


def _child(scenario, reps, seed=1):
    try:
        proc = subprocess.run(
            [sys.executable, CHILD, scenario, str(reps), str(seed)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{scenario}: the child did not end within 300 s:\n{e.stderr}") from None
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{scenario}: no report (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(lines[-1])
    assert "hang" not in report, f"{scenario}: {report['hang']}:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, proc.stderr[-4000:]
    return report


@pytest.mark.parametrize("reps", [60, pytest.param(300, marks=pytest.mark.slow)])
def test_interrupted_threaded_calls_stop_writing_and_leave_the_pool_working(reps):
    """Calls split across threads (2**21 float32 elements) interrupted
    at random moments: once the KeyboardInterrupt is caught, out no longer
    changes, each of its elements holds its old value or the right result,
    and the next call (from another thread) ends and is right."""
    report = _child("threaded", reps)
    assert report["split"], "the calls were not split across threads"
    assert report["interrupted"] >= reps // 3, report  # the timer hit the calls
    assert report["late_writes"] == 0, report
    assert report["wrong"] == 0, report


@pytest.mark.parametrize("reps", [50, pytest.param(200, marks=pytest.mark.slow)])
def test_interrupted_first_calls_leave_no_lock_taken(reps):
    """First calls (the kernels loaded from the disk cache, under this
    package's, the cache folder's, Numba's and llvmlite's locks)
    interrupted at random moments: the next call, from another thread,
    ends and is right."""
    report = _child("compiles", reps)
    assert report["interrupted"] >= reps // 4, report
    assert report["wrong"] == 0, report


@pytest.mark.parametrize("reps", [30, pytest.param(100, marks=pytest.mark.slow)])
def test_interrupted_pool_growth_makes_each_worker_once(reps):
    """Calls that make a worker each, interrupted at random moments:
    every worker is made once, with a slot of its own."""
    report = _child("grows", reps)
    assert report["interrupted"] >= reps // 10, report
    assert report["workers"] == report["wanted"], report
    assert report["threads"] == report["distinct"] == report["workers"], report


@pytest.mark.parametrize("reps", [30, pytest.param(100, marks=pytest.mark.slow)])
def test_interrupted_lowering_of_the_thread_count_ends_each_surplus_worker(reps):
    """Changes of the thread count to fewer threads than workers,
    interrupted at random moments: the next call works, and the workers
    left in the end are exactly those the count wants."""
    report = _child("shrinks", reps)
    assert report["interrupted"] >= reps // 10, report
    assert report["workers"] == report["counted"] == report["wanted"], report
    assert report["threads"] == report["distinct"] == report["workers"], report
