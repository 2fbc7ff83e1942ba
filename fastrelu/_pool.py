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
- The owner writes the job (the chunk function, its arguments, the size and
  the chunk length), then publishes it by storing a new *claim word*: a
  31-bit job number and, below it, the index of the next unclaimed chunk.
  Then it wakes the workers the job wants that are asleep.
- The owner and the workers claim chunks by compare-and-swap on the claim
  word, run them, and count them done.  A worker that arrives late finds no
  chunk left; a job never waits for a worker, only for chunks already
  claimed, so a call is never much slower than a serial one.
- A worker that spun for ``SPINS`` rounds without a job marks itself
  asleep, looks once more for a job, and sleeps on its lock.  Marking and
  publishing are full barriers, so either the worker sees the job or the
  owner sees the mark and wakes it.

Importing this module imports Numba.  After a fork the child starts with no
workers and makes its own when it needs them.
"""

import ctypes
import os
import threading

import llvmlite.binding
import numpy as np
from numba.extending import register_jitable

from ._native import (
    call_chunk,
    compare_exchange,
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

# Word indices in the control block; the words written by many threads have
# a 64-byte cache line each.
OWNER, CLAIM, DONE = 0, 8, 16
FUNCTION, SIZE, STEP, CHUNKS, THREADS = 24, 25, 26, 27, 28
ARGS = 32  # 8 words of arguments for the chunk function
WORKERS = 40  # then, per worker, its state and the address of its lock
MAX_WORKERS = 1023
_WORDS = WORKERS + 2 * MAX_WORKERS
_CHUNK_BITS = 32
_CHUNK_MASK = (1 << _CHUNK_BITS) - 1
_JOB_MASK = (1 << 31) - 1
AWAKE, ASLEEP = 0, 1

# Rounds of a worker's wait loop (a load and a pause instruction each, about
# 25 ns here) before it sleeps: about 0.5 ms after its last job.  Workers
# beyond the number of CPUs sleep almost at once, so that they never take a
# core from threads that have work.
SPINS = 20000
SPINS_OVERSUBSCRIBED = 50


@register_jitable
def _work(ctrl, claim):
    """Claim chunks of the job whose claim word was *claim*, and run them,
    until no chunk of that job is left."""
    while True:
        if (claim & _CHUNK_MASK) >= load(ctrl + 8 * CHUNKS):
            return
        function, size, step = load(ctrl + 8 * FUNCTION), load(ctrl + 8 * SIZE), load(ctrl + 8 * STEP)
        found = compare_exchange(ctrl + 8 * CLAIM, claim, claim + 1)
        if found != claim:
            if (found >> _CHUNK_BITS) != (claim >> _CHUNK_BITS):
                return  # the job is over, and another one posted
            claim = found
            continue
        # The claim succeeded, so the job was still running: the fields read
        # above were its own.
        lo = (claim & _CHUNK_MASK) * step
        call_chunk(function, ctrl + 8 * ARGS, lo, min(lo + step, size))
        fetch_add(ctrl + 8 * DONE, 1)
        claim += 1


@register_jitable
def _spin(ctrl, index, seen, spins):
    """Join every job posted after job *seen* that wants worker *index*,
    until *spins* rounds pass without one; return the last job seen."""
    idle = 0
    while idle < spins:
        claim = load_acquire(ctrl + 8 * CLAIM)
        if (claim >> _CHUNK_BITS) != seen:
            seen = claim >> _CHUNK_BITS
            if index + 1 < load(ctrl + 8 * THREADS):  # thread 0 is the caller
                _work(ctrl, claim)
            idle = 0
        else:
            spin_pause()
            idle += 1
    return seen


def serve(ctrl, index, spins):
    """Worker *index*'s life: spin for jobs, sleep, be woken; never returns."""
    state = ctrl + 8 * (WORKERS + 2 * index)
    lock = load(state + 8)
    seen = -1  # joins a job under way, if any
    while True:
        seen = _spin(ctrl, index, seen, spins)
        compare_exchange(state, AWAKE, ASLEEP)
        if (load_acquire(ctrl + 8 * CLAIM) >> _CHUNK_BITS) != seen:
            if compare_exchange(state, ASLEEP, AWAKE) == ASLEEP:
                continue  # a job came while this worker was going to sleep
            # ... and its owner has already released the lock: take it back
        lock_acquire(lock)  # until an owner releases it, having set the state AWAKE


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
    store(ctrl + 8 * THREADS, threads)
    store(ctrl + 8 * DONE, 0)
    job = ((load(ctrl + 8 * CLAIM) >> _CHUNK_BITS) + 1) & _JOB_MASK
    claim = job << _CHUNK_BITS
    store_release(ctrl + 8 * CLAIM, claim)
    fence()  # the claim is visible before the states are read
    for i in range(min(threads - 1, MAX_WORKERS)):
        state = ctrl + 8 * (WORKERS + 2 * i)
        if load(state) == ASLEEP and compare_exchange(state, ASLEEP, AWAKE) == ASLEEP:
            lock_release(load(state + 8))
    _work(ctrl, claim)
    while load_acquire(ctrl + 8 * DONE) != chunks:
        spin_pause()
    store_release(ctrl + 8 * OWNER, 0)


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
_SYMBOL = "fastrelu_pool_block"
llvmlite.binding.add_symbol(_SYMBOL, _block.ctypes.data)
block_address = symbol(_SYMBOL)

_allocate_lock = ctypes.pythonapi.PyThread_allocate_lock
_allocate_lock.restype = ctypes.c_void_p
_acquire_lock = ctypes.pythonapi.PyThread_acquire_lock
_acquire_lock.argtypes = [ctypes.c_void_p, ctypes.c_int]


class Pool:
    """The worker threads of this process."""

    def __init__(self):
        self.pid = os.getpid()
        self.address = _block.ctypes.data
        self.workers = 0
        self._lock = threading.Lock()
        self._cpus = _cpus()

    def ready(self, threads):
        """Make sure ``threads - 1`` workers exist (at most ``MAX_WORKERS``)."""
        if self.workers < threads - 1:
            self._grow(min(threads - 1, MAX_WORKERS))

    def _grow(self, helpers):
        from ._kernels import compiled_serve

        serve_compiled = compiled_serve()
        with self._lock:
            while self.workers < helpers:
                index = self.workers
                lock = _allocate_lock()
                _acquire_lock(lock, 1)  # held: the worker's first acquire waits
                _block[WORKERS + 2 * index + 1] = lock
                spins = SPINS if index + 2 <= self._cpus else SPINS_OVERSUBSCRIBED
                threading.Thread(
                    target=serve_compiled,
                    args=(self.address, index, spins),
                    name=f"fastrelu-{index + 1}",
                    daemon=True,
                ).start()
                self.workers += 1


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
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)
