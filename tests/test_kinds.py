"""Same kind in, same kind out: NumPy subclasses and masked arrays, against
NumPy's own ufuncs (PyTorch tensors: tests/test_torch.py)."""

import numpy as np
import pytest

import fastrelu

# --- NumPy subclasses and masked arrays --------------------------------------


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_matrix_stays_a_matrix():
    m = np.matrix([[-1.0, 2.0], [3.0, -4.0]])
    got = fastrelu.relu(m)
    assert type(got) is np.matrix
    np.testing.assert_array_equal(got, np.maximum(m, 0))
    got = fastrelu.relu_backward(np.ones((2, 2)), m)
    assert type(got) is np.matrix


class _Low(np.ndarray):
    __array_priority__ = 1.0


class _High(np.ndarray):
    __array_priority__ = 5.0


def test_the_subclass_of_highest_priority_wraps_the_result():
    low = np.array([1.0, -1.0]).view(_Low)
    high = np.array([2.0, 2.0]).view(_High)
    assert type(fastrelu.relu_backward(low, high)) is type(np.multiply(low, high)) is _High
    assert type(fastrelu.relu_backward(high, low)) is _High
    out = np.empty(2)
    assert fastrelu.relu_backward(low, high, out=out) is out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_arrays_keep_their_mask_as_numpy_ufuncs_do(dtype):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(5, 4)).astype(dtype)
    mask = rng.random((5, 4)) < 0.3
    x = np.ma.array(data, mask=mask)
    got = fastrelu.relu(x)
    expected = np.maximum(x, 0)
    assert type(got) is np.ma.MaskedArray
    np.testing.assert_array_equal(got.mask, expected.mask)
    np.testing.assert_array_equal(got.data, expected.data)  # masked positions too
    got = fastrelu.softplus(x)
    np.testing.assert_array_equal(got.mask, mask)
    np.testing.assert_allclose(got.data, np.logaddexp(0, data.astype(np.float64)), rtol=4e-7)


def test_masks_of_both_operands_combine_and_broadcast():
    x = np.ma.array([[-1.0, 0.0, 2.0]], mask=[[0, 1, 0]])
    g = np.ma.array([[5.0], [6.0]], mask=[[1], [0]])
    got = fastrelu.relu_backward(x, g)
    expected = np.multiply(x > 0, g)
    np.testing.assert_array_equal(got.mask, expected.mask)
    np.testing.assert_array_equal(got.mask, [[True, True, True], [False, True, False]])
    np.testing.assert_array_equal(got.data, [[0.0, 0.0, 5.0], [0.0, 0.0, 6.0]])


def test_masked_out_gets_the_mask_of_the_operands():
    x = np.ma.array([-1.0, 2.0, 3.0], mask=[0, 1, 0])
    out = np.ma.array(np.full(3, 9.0), mask=[1, 1, 1])
    assert fastrelu.relu(x, out=out) is out
    np.testing.assert_array_equal(out.mask, [False, True, False])
    np.testing.assert_array_equal(out.data, [0.0, 2.0, 3.0])


def test_masked_zero_d_and_unmasked():
    assert fastrelu.relu(np.ma.array(-2.0, mask=True)) is np.ma.masked
    assert fastrelu.relu(np.ma.array(-2.0, mask=False)) == 0.0
    plain = fastrelu.relu(np.ma.array([-1.0, 1.0]))
    assert type(plain) is np.ma.MaskedArray and not plain.mask.any()
