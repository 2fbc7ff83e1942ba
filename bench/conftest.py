import os
import platform
from importlib import metadata

import numpy as np
import pytest


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def arrays():
    """``arrays(dtype, size)``: the inputs ``(x, grad)`` of one benchmark group.

    Standard normal, from a generator seeded by the dtype and size, so that
    every implementation in a group sees the same numbers.  Only the latest
    pair is kept: the suite runs the groups of one dtype and size together,
    and 2**24 float64 elements take 128 MiB an array.
    """
    cache = {}

    def get(dtype, size):
        dtype = np.dtype(dtype)
        key = (dtype, size)
        if key not in cache:
            cache.clear()
            rng = np.random.default_rng([size, dtype.itemsize])
            cache[key] = (rng.standard_normal(size, dtype=dtype), rng.standard_normal(size, dtype=dtype))
        return cache[key]

    return get


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what ``bench/render.py`` prints about the machine and software."""
    import fastrelu
    from fastrelu._throughput import cpu_model

    machine_info["fastrelu_bench"] = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "fastrelu_threads": fastrelu.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "fastrelu": fastrelu.__version__,
            "numpy": np.__version__,
            "numba": _version("numba"),
            "torch": _version("torch"),
        },
    }
