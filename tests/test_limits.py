"""NumPy's limits and clear errors at the edges of what a call accepts:
arrays of up to NumPy's 64 dimensions, Python ints beyond any float, thread
counts beyond any machine, Numba's compiler switched off."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastrelu

HUGE = 10**400


# 33 (past the 32 of NumPy 1) and 64 (NumPy 2's limit); 41, between them, in -m slow.
@pytest.mark.parametrize("ndim", [33, pytest.param(41, marks=pytest.mark.slow), 64])
def test_broadcasting_as_far_as_numpy_goes(ndim):
    rng = np.random.default_rng(ndim)
    x = rng.standard_normal((1,) * (ndim - 1) + (3,))
    g = rng.standard_normal((2,) + (1,) * (ndim - 2) + (3,))
    want = g * (x > 0)  # NumPy's own broadcasting, to 64 dimensions
    got = fastrelu.relu_backward(x, g)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(fastrelu.softplus_backward(x, g), g / (1 + np.exp(-x)), rtol=1e-15)


def test_shapes_that_do_not_broadcast_are_named():
    x = np.ones((1,) * 40 + (3,))
    with pytest.raises(ValueError, match=r"x and grad cannot be broadcast together: x has shape \(1, 1,"):
        fastrelu.relu_backward(x, np.ones((4,)))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x, v, out: fastrelu.relu_backward(x, x, out=out, at_zero=v), "at_zero"),
        (lambda x, v, out: fastrelu.softplus(x, out=out, beta=v), "beta"),
        (lambda x, v, out: fastrelu.softplus_backward(x, x, out=out, threshold=v), "threshold"),
    ],
)
@pytest.mark.parametrize("value", [HUGE, -HUGE])
def test_an_int_beyond_any_float_is_named(call, name, value):
    out = np.full(3, 7.0)
    message = rf"^{name} must be a real number a float can hold, got -?1000.*\.\.\.0+$"
    with pytest.raises(ValueError, match=message):
        call(np.ones(3), value, out)
    assert (out == 7.0).all()


@pytest.mark.parametrize("n", [HUGE, 2**23, 0, -1, True, 2.0, "2"])
def test_thread_counts_beyond_any_machine_are_refused(n):
    before = fastrelu.get_num_threads()
    with pytest.raises(ValueError, match="positive integer of at most 8388607"):
        fastrelu.set_num_threads(n)
    assert fastrelu.get_num_threads() == before


def _python(code, env, cwd=None):
    return subprocess.run(
        [sys.executable, *code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=cwd,
    )


@pytest.mark.parametrize("value", ["abc", "0", str(2**23)])
def test_a_bad_thread_count_in_the_environment_is_reported_at_the_users_import(tmp_path, value):
    script = tmp_path / "user.py"
    script.write_text("import numpy\nimport fastrelu\nprint(fastrelu.get_num_threads())\n")
    done = _python(["-W", "always", str(script)], {"FASTRELU_NUM_THREADS": value})
    assert done.returncode == 0, done.stderr
    assert f"{script}:2: RuntimeWarning: ignoring FASTRELU_NUM_THREADS={value!r}" in done.stderr
    assert int(done.stdout) == len(os.sched_getaffinity(0))


def test_numba_disable_jit_is_refused_clearly():
    code = (
        "import numpy as np, fastrelu\n"
        "for x in (np.ones(3), [1.0, -1.0]):\n"
        "    try:\n"
        "        fastrelu.relu(x)\n"
        "    except RuntimeError as e:\n"
        "        print(e)\n"
    )
    done = _python(["-c", code], {"NUMBA_DISABLE_JIT": "1"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all("NUMBA_DISABLE_JIT=1" in line for line in lines), done.stdout
