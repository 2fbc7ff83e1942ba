"""``fastrelu study``: its data, its network's gradients, its float16
arithmetic, its statistics, and the command's quick run."""

import re
import subprocess
import sys

import numpy as np
import pytest

from fastrelu import _cli

sklearn = pytest.importorskip("sklearn")
from fastrelu import _study  # noqa: E402


def test_the_digits_data_is_split_once_and_exactly_representable():
    X, y, X_test, y_test = _study.load_digits()
    reference = sklearn.datasets.load_digits()
    assert X.shape == (_study.TRAIN_SIZE, 64) and X_test.shape == (_study.TEST_SIZE, 64)
    assert _study.TRAIN_SIZE + _study.TEST_SIZE == len(reference.target)
    assert set(y) == set(y_test) == set(range(10))
    # Every digit exactly once, scaled as documented: pixel / 8 - 1.
    ours = (np.concatenate([X, X_test]) + 1) * 8
    assert sorted(map(tuple, ours)) == sorted(map(tuple, reference.data))
    assert np.bincount(np.concatenate([y, y_test])).tolist() == np.bincount(reference.target).tolist()
    for dtype in (np.float16, np.float32):
        assert np.array_equal(X.astype(dtype).astype(np.float64), X)
    again = _study.load_digits()
    assert all(np.array_equal(a, b) for a, b in zip(again, (X, y, X_test, y_test)))


def test_half_conversions_are_numpys():
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    widened = _study.from_half(every)
    assert np.array_equal(widened.view(np.uint32), every.astype(np.float32).view(np.uint32))
    rng = np.random.default_rng()
    singles = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = np.float32(
        [0.0, -0.0, np.inf, -np.inf, 65504, 65519.99, 65520, -65520, 1e30, 2**-14, 2**-24, 2**-25]
        + [3 * 2**-26, 2**-26, 1e-45, 1.5 * 2**-24, 2.5 * 2**-24, 1 + 2**-11, 1 + 3 * 2**-11]
    )
    for values in (singles, edges, (rng.standard_normal((64, 33)) * 1e-4).astype(np.float32).T):
        with np.errstate(over="ignore"):
            expected = values.astype(np.float16)
        got = _study.to_half(values)
        assert got.shape == values.shape and got.dtype == np.float16
        nan = np.isnan(expected)
        assert np.isnan(got[nan]).all()
        assert np.array_equal(got[~nan].view(np.uint16), expected[~nan].view(np.uint16))


def _loss(net, X, y):
    logits = net.forward(X)[0].astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return float(-(shifted[np.arange(len(y)), y] - np.log(np.exp(shifted).sum(axis=1))).mean())


def test_backpropagation_matches_finite_differences():
    X, y = _study.load_digits()[:2]
    X, y = X[:40], y[:40]
    rng = np.random.default_rng(5)
    weights, biases = _study.initial_weights([64, 7, 5, 10], rng)
    net = _study.Network(weights, biases, np.float64)
    logits, pre, inputs = net.forward(X)
    grads = net.backward(pre, inputs, net.loss_gradient(logits, y), at_zero=0.0)
    params = [p for layer in range(len(net.W) - 1, -1, -1) for p in (net.W[layer], net.b[layer])]
    for param, grad in zip(params, grads):
        for index in [tuple(rng.integers(0, n) for n in param.shape) for _ in range(4)]:
            saved = param[index]
            param[index] = saved + 1e-6
            up = _loss(net, X, y)
            param[index] = saved - 1e-6
            down = _loss(net, X, y)
            param[index] = saved
            assert grad[index] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("dtype", _study.PRECISIONS)
def test_the_choice_at_zero_enters_only_at_exact_zeros(dtype):
    """Forced exact zeros: a unit whose weights and bias are 0.  The
    gradient there is at_zero times the upstream gradient, or at_zero itself
    with the constant rule; elsewhere the choice changes nothing."""
    X, y = _study.load_digits()[:2]
    X, y = X[:16], y[:16]
    weights, biases = _study.initial_weights([64, 6, 10], np.random.default_rng(1))
    weights[0][:, 2] = biases[0][2] = 0
    net = _study.Network(weights, biases, dtype)
    logits, pre, inputs = net.forward(X)
    assert (pre[0][:, 2] == 0).all() and (pre[0][:, [0, 1, 3, 4, 5]] != 0).all()
    grad = net.loss_gradient(logits, y)
    upstream = (grad.astype(np.float64) @ net.W[1].astype(np.float64).T)[:, 2]
    base = net.backward(pre, inputs, grad, 0.0)
    for at_zero, rule in [(1.0, "scaled"), (0.5, "scaled"), (1.0, "constant")]:
        other = net.backward(pre, inputs, grad, at_zero, rule)
        assert all(np.array_equal(a, b) for a, b in zip(base[:2], other[:2]))  # the last layer's
        dz = (other[3] - base[3]).astype(np.float64)  # the first layer's bias gradient
        assert np.array_equal(dz[[0, 1, 3, 4, 5]], np.zeros(5))
        expected = at_zero * upstream.sum() if rule == "scaled" else at_zero * len(X)
        assert dz[2] == pytest.approx(expected, rel=2e-3 if dtype == "float16" else 1e-5)


def test_wilson_interval():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(0, 300), (1, 300), (71, 300), (12, 12), (5, 17)]:
        reference = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert _study.wilson(k, n) == pytest.approx((reference.low, reference.high), abs=1e-9)


def _table(text, title):
    """The rows of the table after the line starting with *title*, by precision."""
    block = text.split(title, 1)[1].split("\n\n")[1]
    return {line.split()[0]: line.split()[1:] for line in block.splitlines()[1:]}


def test_the_quick_study(capsys, tmp_path):
    figure = tmp_path / "study.png"
    assert _cli.main(["study", "--quick", "--sweep", "depth", "--output", str(figure)]) == 0
    out = capsys.readouterr().out
    assert figure.read_bytes().startswith(b"\x89PNG")
    headline = _table(out, "Runs whose gradients differed at some step")
    differing = {dtype: int(row[1].strip("(")) for dtype, row in headline.items()}
    assert differing["float64"] == 0
    assert differing["float16"] > differing["float32"]
    depth = _table(out, "Runs whose gradients differed, by depth")
    assert set(depth) == set(_study.PRECISIONS)
    assert all(cell.startswith("0.0%") for cell in depth["float64"] if cell.endswith("%"))
    # The same command in another process prints the same numbers.
    proc = subprocess.run(
        [sys.executable, "-m", "fastrelu", "study", "--quick", "--sweep", "depth", "--no-plot"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == out.rsplit("\nFigure written to", 1)[0]


def test_the_study_says_what_is_missing(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert _cli.main(["study", "--output", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"fastrelu study: error: .*scikit-learn.*pip install 'fastrelu\[study\]'\n", err)
    with pytest.raises(ImportError, match=re.escape("pip install 'fastrelu[study]'")):
        _study.load_digits()
    assert not (tmp_path / "x.png").exists()
