"""The timing behind ``fastrelu bench`` and ``bench/``: interleaved rounds
after a warm-up that waits for the time per call to settle."""

import time

import numpy as np
import pytest

from fastrelu import _throughput


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(_throughput, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(_throughput, "SAMPLE_SECONDS", 2e-4)
    monkeypatch.setattr(_throughput, "WARMUP_SECONDS", 0.02)


def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_rounds_interleave_the_implementations_in_rotated_order():
    order = []
    calls = {name: (lambda name=name: order.append(name) or busy(2e-5)) for name in "abc"}
    timings = _throughput.interleave(calls, rounds=3)
    assert all(len(t.samples) == 3 and all(s > 0 for s in t.samples) for t in timings.values())
    # After the warm-ups, each round runs each implementation's sample in turn,
    # starting one further along each time.
    firsts = []
    tail = order[-sum(timings[n].number for n in "abc") * 3 :]
    k = 0
    for _ in range(3):
        firsts.append(tail[k])
        k += sum(timings[n].number for n in "abc")
    assert firsts == ["a", "b", "c"]


def test_warm_up_lasts_until_the_time_per_call_settles():
    calls = []

    def slow_at_first():
        calls.append(None)
        busy(2e-4 if len(calls) < 60 else 2e-5)  # like PyTorch's first calls in a process

    (timing,) = _throughput.interleave({"f": slow_at_first}, rounds=2).values()
    assert timing.settled and timing.warmup_calls >= 60
    assert max(timing.samples) < 1e-4  # no sample holds a slow call


def test_a_warm_up_that_never_settles_ends(monkeypatch):
    monkeypatch.setattr(_throughput, "WARMUP_BUDGET", 0.05)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    (timing,) = _throughput.interleave({"f": lambda: busy(rng.uniform(0, 4e-4))}, rounds=1).values()
    assert time.perf_counter() - start < 1.0 and len(timing.samples) == 1


def test_quartiles():
    assert _throughput.quartiles([3.0]) == (3.0, 3.0, 3.0)
    assert _throughput.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)


def test_a_timer_times_each_sample():
    asked = []

    def timer(call, number):  # seconds per call: 1 µs per call of the sample, as if measured
        for _ in range(number):
            call()
        asked.append(number)
        return 1e-6 * len(asked)

    (timing,) = _throughput.interleave({"f": lambda: None}, rounds=3, timer=timer, settle=0.0).values()
    # The warm-up's samples come first; the rounds' samples are the timer's last three answers.
    assert timing.samples == [1e-6 * n for n in range(len(asked) - 2, len(asked) + 1)]
    assert asked[-3:] == [timing.number] * 3


def test_wall_clock_timer_waits_for_sync():
    synced = []
    timer = _throughput.wall_clock_timer(lambda: synced.append(True) or busy(1e-3))
    per_call = timer(lambda: None, 10)
    assert synced == [True] and per_call >= 1e-4


def test_measure_on_several_numbers_of_threads_restores_the_setting():
    import fastrelu

    before = fastrelu.get_num_threads()
    peers, rows = _throughput.measure(1 << 10, "float32", repeat=1, compare=False, threads=[1, 2])
    assert peers == [] and fastrelu.get_num_threads() == before
    assert [(r["threads"], r["op"]) for r in rows] == [(n, op) for n in (1, 2) for op in _throughput.KERNELS]
    assert all(r["fastrelu"] > 0 and r["copy"] > 0 and r["peers"] == {} for r in rows)
