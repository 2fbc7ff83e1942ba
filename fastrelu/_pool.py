"""fastrelu's thread pool: worker threads that live in compiled code.

A call split across threads must not pay for waking a sleeping thread, which
costs tens of microseconds on a virtual machine, more than a whole kernel on
a mid-sized array.  So the workers spin for a while after each job, in a
compiled loop, before they go to sleep; a call that comes while they spin is
picked up within a microsecond.  Workers never hold the GIL: they sleep on a
CPython lock (``PyThread_acquire_lock``, which needs no GIL) and the call
that wants them releases it, all in compiled code.

Protocol, over a block of shared int64 words (the *control block*):

- A call owns the pool while it runs (a compare-and-swap on ``OWNER``); a
  call that finds the pool owned by another thread runs serially instead.
- A job's chunks are cut into one *segment* per thread, in order: thread
  ``t`` (0 is the caller, ``i + 1`` worker ``i``) works through its own
  segment first, so that the same thread meets the same part of the arrays
  from call to call, and then takes what is left of the others'.
- The owner writes the job (the chunk function, its arguments, the size and
  the chunk length) and each segment's *claim word*: the job's 31-bit number,
  the segment's number of chunks and the index of its next unclaimed chunk.
  It then publishes the job number and thread count in ``JOB``, and wakes
  the workers the job wants that are asleep.
- Threads claim a chunk by compare-and-swap on a claim word, run it, and
  count it done.  A claim succeeds only while the job is under way (its
  number is in the word, and the word itself says the chunk exists), and the
  job's other words are read after it, so they are the job's own.  A job
  never waits for a worker, only for chunks already claimed: a worker that
  arrives late finds its segment taken, and a call is never much slower than
  a serial one.
- A worker that spun for ``SPINS`` rounds without a job marks itself
  asleep, looks once more for a job, and sleeps on its lock.  Marking and
  publishing are full barriers, so either the worker sees the job or the
  owner sees the mark and wakes it.
- Workers are made as a call needs them, and end when the thread count is
  set lower: the last worker is uncounted first (``Pool.workers`` and the
  workers word of ``_threads.settings``), so that no new plan counts on
  it; then :func:`retire` swaps ``EXIT`` into its state word, and releases
  its lock if the swap took it from ``ASLEEP`` (whoever takes a state from
  ``ASLEEP`` releases the lock, exactly once).  The worker sees ``EXIT``
  between two rounds of its wait, or when it wakes, never inside a chunk
  it claimed, and returns; Python joins its thread and frees its lock
  before the slot serves a new worker.  A call still under way wakes only
  workers found ``ASLEEP``, and never waits for one, so it is not held up.

Importing this module imports Numba.  After a fork the child starts with no
workers and makes its own when it needs them.
"""

import ctypes
import os
import threading

import llvmlite.binding
import numpy as np
from numba.extending import register_jitable

from . import _threads, config
from ._native import (
    call_chunk,
    compare_exchange,
    exchange,
    external5,
    fence,
    fetch_add,
    load,
    load_acquire,
    lock_acquire,
    lock_release,
    spin_pause,
    store,
    store_release,
    symbol,
)

MAX_WORKERS = 1023
# Word indices in the control block; the words written by many threads have
# a 64-byte cache line each.
OWNER, JOB, DONE = 0, 8, 16
FUNCTION, SIZE, STEP, CHUNKS = 24, 25, 26, 27
ARGS = 32  # 8 words of arguments for the chunk function
WORKERS = 40  # per worker: its state and the address of its lock
SEGMENTS = WORKERS + 2 * MAX_WORKERS + 2  # per thread: a claim word on its own line
_WORDS = SEGMENTS + 8 * (MAX_WORKERS + 1)
AWAKE, ASLEEP, EXIT = 0, 1, 2  # a worker's state
_JOB_MASK = (1 << 31) - 1
_FIELD = 0xFFFF  # the thread count in JOB; a segment's chunk count and next chunk

# Rounds of a worker's wait loop (a load and a pause instruction each, about
# 25 ns here) before it sleeps: about 0.5 ms after its last job.  Workers
# beyond the number of CPUs sleep almost at once, so that they never take a
# core from threads that have work.
SPINS = 20000
SPINS_OVERSUBSCRIBED = 50


@register_jitable
def _work(ctrl, job, home, threads):
    """As thread *home* of job number *job* on *threads* threads: claim and
    run the chunks of segment *home*, then of each other segment in turn,
    until none is left or the job is over."""
    for i in range(threads):
        segment = home + i if home + i < threads else home + i - threads
        word = ctrl + 8 * (SEGMENTS + 8 * segment)
        while True:
            claim = load(word)
            if (claim >> 32) != job:
                return  # the job is over, and another one posted
            count, next_chunk = (claim >> 16) & _FIELD, claim & _FIELD
            if next_chunk >= count:
                break  # this segment is taken: on to the next one
            if compare_exchange(word, claim, claim + 1) != claim:
                continue
            # The claim succeeded, so the job is under way until this chunk
            # is counted done: its words below are its own.
            chunks, step, size = load(ctrl + 8 * CHUNKS), load(ctrl + 8 * STEP), load(ctrl + 8 * SIZE)
            lo = (segment * chunks // threads + next_chunk) * step
            call_chunk(load(ctrl + 8 * FUNCTION), ctrl + 8 * ARGS, lo, min(lo + step, size))
            fetch_add(ctrl + 8 * DONE, 1)


@register_jitable
def _spin(ctrl, index, seen, spins):
    """Join every job posted after job *seen* that wants worker *index*,
    until *spins* rounds pass without one or the worker is told to exit;
    return the last job seen."""
    state = ctrl + 8 * (WORKERS + 2 * index)
    idle = 0
    while idle < spins:
        posted = load_acquire(ctrl + 8 * JOB)
        if (posted >> 32) != seen:
            seen = posted >> 32
            threads = posted & _FIELD
            if index + 1 < threads:  # thread 0 is the caller
                _work(ctrl, seen, index + 1, threads)
            idle = 0
        else:
            spin_pause()
            idle += 1
        if load(state) == EXIT:  # every round: calls that keep coming do not hold it
            break
    return seen


def serve(ctrl, index, spins):
    """Worker *index*'s life: spin for jobs, sleep, be woken; returns when
    :func:`retire` has set its state to ``EXIT``, holding its lock."""
    state = ctrl + 8 * (WORKERS + 2 * index)
    lock = load(state + 8)
    seen = -1  # joins a job under way, if any
    while True:
        seen = _spin(ctrl, index, seen, spins)
        if compare_exchange(state, AWAKE, ASLEEP) == EXIT:
            return
        if (load_acquire(ctrl + 8 * JOB) >> 32) != seen:
            if compare_exchange(state, ASLEEP, AWAKE) == ASLEEP:
                continue  # a job came while this worker was going to sleep
            # ... and its owner (or retire) has already released the lock,
            # or is about to: take it back
        lock_acquire(lock)  # until an owner releases it, having set the state AWAKE, or retire
        if load(state) == EXIT:
            return


def retire(ctrl, index):
    """Tell worker *index* to exit, waking it if it sleeps; return the
    state it was in.  Python has uncounted it first."""
    state = ctrl + 8 * (WORKERS + 2 * index)
    found = exchange(state, EXIT)
    if found == ASLEEP:
        lock_release(load(state + 8))
    return found


_ALIGN = 64  # chunk boundaries: a 64-byte cache line of the smallest itemsize
_THRESHOLD_MASK = (1 << _threads.CAP_SHIFT) - 1


@register_jitable
def plan(settings, size, request):
    """``(threads, step)``: a call on *size* elements, asked with *request*
    (see ``_threads.request``), runs on *threads* threads in chunks of *step*
    elements; ``threads == 0`` when Python must act first, to make workers or
    to read the calling thread's cap.  *settings* is the address of
    ``_threads.settings``."""
    if size < (request & _THRESHOLD_MASK):
        return 1, size
    cap = request >> _threads.CAP_SHIFT
    if cap == 0 and load(settings + 8 * _threads.CAPPED) > 0:
        return 0, 0  # some thread has a cap: is it this one?
    threads = load(settings + 8 * _threads.THREADS)
    if cap != 0 and cap < threads:
        threads = cap
    most = size // load(settings + 8 * _threads.MIN_CHUNK)
    threads = min(threads, most, MAX_WORKERS + 1)
    if threads <= 1:
        return 1, size
    if load(settings + 8 * _threads.WORKERS) < threads - 1:
        return 0, 0
    per_thread = min(load(settings + 8 * _threads.CHUNKS), _FIELD)
    chunks = min(threads * per_thread, max(threads, most))
    step = (size + chunks - 1) // chunks
    return threads, (step + _ALIGN - 1) // _ALIGN * _ALIGN


@register_jitable
def run(ctrl, function, args, words, size, step, threads):
    """Run ``function(args, lo, hi)`` over ``range(size)`` in chunks of
    *step*, on the calling thread and up to ``threads - 1`` workers of the
    pool at *ctrl*; *args* holds *words* int64 words."""
    if compare_exchange(ctrl + 8 * OWNER, 0, 1) != 0:
        call_chunk(function, args, 0, size)  # another thread's call has the pool
        return
    chunks = (size + step - 1) // step
    for i in range(words):
        store(ctrl + 8 * (ARGS + i), load(args + 8 * i))
    store(ctrl + 8 * FUNCTION, function)
    store(ctrl + 8 * SIZE, size)
    store(ctrl + 8 * STEP, step)
    store(ctrl + 8 * CHUNKS, chunks)
    store(ctrl + 8 * DONE, 0)
    job = ((load(ctrl + 8 * JOB) >> 32) + 1) & _JOB_MASK
    for segment in range(threads):
        count = (segment + 1) * chunks // threads - segment * chunks // threads
        store(ctrl + 8 * (SEGMENTS + 8 * segment), job << 32 | count << 16)
    store_release(ctrl + 8 * JOB, job << 32 | threads)
    fence()  # the job is visible before the states are read
    for i in range(min(threads - 1, MAX_WORKERS)):
        state = ctrl + 8 * (WORKERS + 2 * i)
        if load(state) == ASLEEP and compare_exchange(state, ASLEEP, AWAKE) == ASLEEP:
            lock_release(load(state + 8))
    _work(ctrl, job, 0, threads)
    while load_acquire(ctrl + 8 * DONE) != chunks:
        spin_pause()
    store_release(ctrl + 8 * OWNER, 0)


def run_job(function, args, size, step, threads):
    """:func:`run` on this process's pool, as a C function: the entries call
    it through the symbol ``fastrelu_pool_run`` (see ``_kernels``), so that
    they need not each hold a copy of it."""
    run(block_address(), function, args, 8, size, step, threads)


run_compiled = external5("fastrelu_pool_run")


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# The control block: one per process, for its lifetime, so that compiled
# code can name it as a symbol (a forked child keeps it at the same address).
# One spare cache line, to start it on a line boundary.
_buffer = np.zeros(_WORDS + 8, np.int64)
_block = _buffer[(-_buffer.ctypes.data % 64) // 8 :][:_WORDS]
llvmlite.binding.add_symbol("fastrelu_pool_block", _block.ctypes.data)
block_address = symbol("fastrelu_pool_block")
llvmlite.binding.add_symbol("fastrelu_thread_settings", _threads.settings.ctypes.data)
settings_address = symbol("fastrelu_thread_settings")

_allocate_lock = ctypes.pythonapi.PyThread_allocate_lock
_allocate_lock.restype = ctypes.c_void_p
_acquire_lock = ctypes.pythonapi.PyThread_acquire_lock
_acquire_lock.argtypes = [ctypes.c_void_p, ctypes.c_int]
_free_lock = ctypes.pythonapi.PyThread_free_lock
_free_lock.argtypes = [ctypes.c_void_p]
_free_lock.restype = None


class Pool:
    """The worker threads of this process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.address = _block.ctypes.data
        self.workers = 0
        self._threads: list[threading.Thread] = []  # the workers' threads, by slot
        self._lock = threading.Lock()
        self._cpus = _cpus()

    def ready(self, threads):
        """Make sure ``threads - 1`` workers exist (at most ``MAX_WORKERS``)."""
        if self.workers < threads - 1:
            # Uninterrupted: a worker started but not counted would serve
            # the slot of the next one made.
            _threads.uninterrupted(self._grow, min(threads - 1, MAX_WORKERS))

    def shrink(self, threads):
        """End the workers beyond ``threads - 1``, and wait for them."""
        if self.workers > threads - 1:
            # Uninterrupted: a worker told to exit but not joined would keep
            # its slot from the next one made.
            _threads.uninterrupted(self._shrink, max(threads - 1, 0))

    def _grow(self, helpers):
        from ._kernels import compiled_serve

        serve_compiled = compiled_serve()
        with self._lock:
            while self.workers < helpers:
                index = self.workers
                lock = _allocate_lock()
                _acquire_lock(lock, 1)  # held: the worker's first acquire waits
                _block[WORKERS + 2 * index + 1] = lock
                _block[WORKERS + 2 * index] = AWAKE  # a slot used before says EXIT
                spins = SPINS if index + 2 <= self._cpus else SPINS_OVERSUBSCRIBED
                thread = threading.Thread(
                    target=serve_compiled,
                    args=(self.address, index, spins),
                    name=f"fastrelu-{index + 1}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
                self.workers += 1
                _threads.settings[_threads.WORKERS] = self.workers
            # The thread count may have been lowered while the workers were
            # made, after the listener that follows it looked at them.
            self._retire(max(config.get_num_threads() - 1, 0))

    def _shrink(self, helpers):
        with self._lock:
            self._retire(helpers)

    def _retire(self, helpers):
        """End the workers beyond *helpers*, the last first; holds the lock."""
        if self.workers <= helpers:
            return
        from ._kernels import compiled_retire

        retire_compiled = compiled_retire()
        while self.workers > helpers:
            self.workers -= 1
            index = self.workers
            _threads.settings[_threads.WORKERS] = self.workers  # no new plan counts on it
            retire_compiled(self.address, index)
            self._threads.pop().join()
            _free_lock(int(_block[WORKERS + 2 * index + 1]))
            _block[WORKERS + 2 * index + 1] = 0


def _follow_the_thread_count():
    # A listener of fastrelu.config, after _threads.sync: the workers beyond
    # the thread count end.
    pool = _pool
    if pool is not None:
        pool.shrink(config.get_num_threads())


config._listeners.append(_follow_the_thread_count)


def jobs():
    """How many calls this process has split across threads (modulo 2**31)."""
    return int(_block[JOB]) >> 32


_pool = None
_pool_lock = threading.Lock()


def get():
    """This process's pool, made on first use."""
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = Pool()
            pool = _pool
    return pool


def _forget():
    # The parent's workers do not exist in a forked child, and the block may
    # hold the state of a call that was running in another thread.
    global _pool, _pool_lock
    _block[:] = 0
    _threads.settings[_threads.WORKERS] = 0
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)
