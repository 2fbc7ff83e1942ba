"""The on-disk cache of compiled code, broken in the ways disks and people
break it: every call still computes, a bad entry is compiled again and
replaced, and a cache that cannot be used gives way to compiling in memory
(said once, as a warning).  Each scenario runs in fresh processes with a
time limit, sharing a cache folder of its own."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

TIMEOUT = 180
X = [-2.0, -0.0, 0.5, 3.0]
# What the child computes, and what it reports: results, the compile log.
CALLS = """
    import json, warnings, numpy as np, fastrelu
    from fastrelu import _kernels
    x = np.array({x})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [fastrelu.relu(x).tolist(), fastrelu.softplus(x.astype(np.float32)).tolist(),
                   fastrelu.relu_backward(x, 2.0, at_zero=0.5).tolist()]
    print(json.dumps({{
        "results": results,
        "loaded": [e["loaded"] for e in _kernels.log],
        "cached": [e["cache_path"] is not None for e in _kernels.log],
        "cache": _kernels.cache_location(),
        "warnings": [str(w.message) for w in caught if "compiles in memory" in str(w.message)],
    }}))
"""


def want():
    x = np.array(X)
    import fastrelu

    return [
        np.maximum(x, 0).tolist(),
        fastrelu.softplus(x.astype(np.float32)).tolist(),
        np.where(x > 0, 2.0, np.where(x == 0, 1.0, 0.0)).tolist(),
    ]


def child(cache, prelude="", timeout=TIMEOUT):
    """Run the calls in a fresh process on cache folder *cache*, after
    *prelude*; return its report."""
    code = textwrap.dedent(prelude) + textwrap.dedent(CALLS.format(x=X))
    env = {k: v for k, v in os.environ.items() if k not in ("FASTRELU_CACHE", "NUMBA_DISABLE_JIT")}
    env["NUMBA_CACHE_DIR"] = str(cache)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def cache_files(cache, suffix):
    return sorted(Path(cache).rglob(f"*{suffix}"))


@pytest.fixture(scope="module")
def expected():
    return want()


@pytest.fixture(scope="module")
def warmed(tmp_path_factory, expected):
    """A cache folder that holds the code of the calls."""
    cache = tmp_path_factory.mktemp("warmed") / "cache"
    first = child(cache)
    assert first["results"] == expected and not all(first["loaded"])
    second = child(cache)
    assert second["results"] == expected and all(second["loaded"]) and not second["warnings"]
    return cache


@pytest.fixture
def warm(warmed, tmp_path):
    """A copy of the warmed cache folder, for one test to break."""
    cache = tmp_path / "cache"
    shutil.copytree(warmed, cache)
    return cache


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path):
    path.write_bytes(b"")


def _flip(path):
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), max(1, len(data) // 64)):  # bits all over the file
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


DAMAGES = {"truncated": _truncate, "empty": _empty, "bit-flipped": _flip}
# The default run flips bits of the code files; -m slow damages both kinds
# of file in every way.
DEFAULT_DAMAGES = {(".nbc", "bit-flipped")}


@pytest.mark.parametrize(
    "suffix, damage",
    [
        pytest.param(
            suffix,
            DAMAGES[name],
            id=f"{suffix}-{name}",
            marks=() if (suffix, name) in DEFAULT_DAMAGES else pytest.mark.slow,
        )
        for suffix in (".nbi", ".nbc")
        for name in DAMAGES
    ],
)
def test_a_damaged_cache_entry_is_compiled_again_and_replaced(warm, expected, damage, suffix):
    files = cache_files(warm, suffix)
    assert files
    for path in files:
        damage(path)
    report = child(warm)
    assert report["results"] == expected
    assert not report["warnings"]
    again = child(warm)  # the entries were replaced: all of it loads
    assert again["results"] == expected and all(again["loaded"]), again


# The scenarios below start several processes that compile: -m slow (the
# default run keeps the damaged code files above).


@pytest.mark.slow
def test_swapped_cache_files_are_not_served(warm, expected):
    data = cache_files(warm, ".nbc")
    assert len(data) >= 4
    contents = [p.read_bytes() for p in data]
    for path, content in zip(data, contents[1:] + contents[:1]):  # each gets its neighbour's code
        path.write_bytes(content)
    assert child(warm)["results"] == expected
    again = child(warm)
    assert again["results"] == expected and all(again["loaded"]), again


@pytest.mark.slow
def test_a_cache_that_cannot_be_written_gives_way_to_memory(tmp_path, expected):
    """A full disk, as a file-size limit of 0 bytes: nothing can be saved."""
    prelude = """
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    """
    report = child(tmp_path / "cache", prelude)
    assert report["results"] == expected
    assert len(report["warnings"]) == 1 and "could not be read or written" in report["warnings"][0]
    # What the full disk left behind (empty files) is replaced by a process that can write.
    assert child(tmp_path / "cache")["results"] == expected
    again = child(tmp_path / "cache")
    assert again["results"] == expected and all(again["loaded"]) and not again["warnings"]


@pytest.mark.slow
def test_a_process_holding_the_cache_lock_delays_a_first_call_boundedly(warm, expected):
    lock = Path(child(warm)["cache"]) / "fastrelu.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        report = child(warm, "import fastrelu\nfastrelu.config.set(cache_lock_seconds=1.0)\n", timeout=120)
        took = time.monotonic() - start
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert report["results"] == expected
    assert len(report["warnings"]) == 1 and "held the lock" in report["warnings"][0]
    assert took < 60
    assert child(warm)["results"] == expected  # the lock is free again: all as before
