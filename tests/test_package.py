"""The package as a user meets it: import, thread settings, metadata."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastrelu
from fastrelu import config


def run_python(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_import_loads_no_numba_and_compiles_nothing():
    code = (
        "import sys, numpy, fastrelu\n"
        "assert 'numba' not in sys.modules, 'importing fastrelu imported numba'\n"
        "from fastrelu import _kernels\n"
        "assert not _kernels._compiled and not _kernels.log\n"
        "fastrelu.relu([1.0])\n"
        "assert 'numba' in sys.modules\n"
        "keys = sorted(e['key'] for e in _kernels.log)\n"
        "assert keys == [\"('chunk', 'relu', dtype('float64'), ())\",\n"
        "                \"('entry', 1, dtype('float64'), 1, 0)\", \"('pool',)\"], keys\n"
    )
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr


def test_set_num_threads_round_trip_and_validation():
    before = fastrelu.get_num_threads()
    try:
        fastrelu.set_num_threads(np.int64(3))
        assert fastrelu.get_num_threads() == 3
        for bad in (0, -1, 1.5, True, "2", None):
            with pytest.raises(ValueError, match="positive integer"):
                fastrelu.set_num_threads(bad)
        assert fastrelu.get_num_threads() == 3
    finally:
        fastrelu.set_num_threads(before)


def threads_seen_with(value):
    code = "import fastrelu; print(fastrelu.get_num_threads())"
    return run_python("-c", code, env={**os.environ, "FASTRELU_NUM_THREADS": value})


def test_thread_count_from_environment():
    proc = threads_seen_with("3")
    assert proc.stdout.strip() == "3" and not proc.stderr


@pytest.mark.parametrize("value", ["0", "many"])
def test_bad_thread_count_in_environment_warns_and_uses_all_cpus(value):
    proc = threads_seen_with(value)
    assert "FASTRELU_NUM_THREADS" in proc.stderr
    assert int(proc.stdout) == len(os.sched_getaffinity(0))


def test_switchover_sizes_are_positive_for_every_kernel():
    from fastrelu._table import KERNELS

    assert set(config.PARALLEL_MIN_SIZE) == set(KERNELS)
    assert all(v > 0 for v in config.PARALLEL_MIN_SIZE.values())


def test_version_matches_the_installed_metadata():
    from importlib.metadata import version

    assert fastrelu.__version__ == version("fastrelu")


def test_the_package_and_its_users_type_check(tmp_path):
    """mypy passes on the package (``py.typed`` marks it as typed), and sees
    the public signatures: a caller's wrong argument types are reported."""
    root = Path(__file__).resolve().parents[1]
    package = run_python("-m", "mypy", "--config-file", str(root / "pyproject.toml"), "-p", "fastrelu")
    assert package.returncode == 0, package.stdout + package.stderr
    assert (root / "fastrelu" / "py.typed").exists()
    user = tmp_path / "user.py"
    user.write_text(
        "import numpy as np\n"
        "import fastrelu\n"
        "x = np.ones(3)\n"
        "fastrelu.relu_backward(x, x, at_zero=0.5)\n"
        "fastrelu.softplus(x, beta=2, threshold=None)\n"
        "n: int = fastrelu.get_num_threads()\n"
        "fastrelu.relu_backward(x, x, at_zero='half')\n"
        "fastrelu.set_num_threads('2')\n"
    )
    checked = run_python("-m", "mypy", "--config-file", str(root / "pyproject.toml"), str(user))
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["7", "8"], checked.stdout
