"""GPU tests: they need numba-cuda (``pip install ".[cuda]"``) and either a GPU
or Numba's CUDA simulator, which must be switched on before Numba is
imported (``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda``)."""

import pytest

cuda = pytest.importorskip("numba.cuda", exc_type=Exception)


def pytest_configure(config):
    # In the simulator the formulas run as plain Python on NumPy scalars,
    # which warn where the compiled code silently gives inf or NaN.
    config.addinivalue_line("filterwarnings", "ignore:.*encountered in scalar:RuntimeWarning")
