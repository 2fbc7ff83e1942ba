"""fastrelu.config: settings read as attributes, changed only through
``config.set``, for good or for a ``with`` block, checked whole before any
is applied, and in force at the next call."""

import math
from collections.abc import Mapping, MutableMapping

import numpy as np
import pytest

import fastrelu
from fastrelu import _threads, config
from fastrelu._table import KERNELS

# set()'s keyword -> the attribute that reads it
ATTRIBUTES = {
    "parallel_min_size": "PARALLEL_MIN_SIZE",
    "parallel_min_chunk": "PARALLEL_MIN_CHUNK",
    "stream_min_bytes": "STREAM_MIN_BYTES",
    "buffer_size": "BUFFER_SIZE",
    "cache_lock_seconds": "CACHE_LOCK_SECONDS",
    "dask_block_threads": "DASK_BLOCK_THREADS",
}


def snapshot():
    """Every setting, as plain values."""
    values = {keyword: getattr(config, attribute) for keyword, attribute in ATTRIBUTES.items()}
    values["parallel_min_size"] = dict(values["parallel_min_size"])
    values["num_threads"] = fastrelu.get_num_threads()
    return values


@pytest.fixture(autouse=True)
def settings_as_they_were():
    """Each test leaves the settings as it found them."""
    before = snapshot()
    yield before
    config.set(**before)
    assert snapshot() == before


def test_set_changes_settings_for_good(settings_as_they_were):
    before = settings_as_they_were
    config.set(parallel_min_chunk=512, buffer_size=np.int64(4096), cache_lock_seconds=2)
    assert config.PARALLEL_MIN_CHUNK == 512
    assert config.BUFFER_SIZE == 4096 and type(config.BUFFER_SIZE) is int
    assert config.CACHE_LOCK_SECONDS == 2.0 and type(config.CACHE_LOCK_SECONDS) is float
    assert snapshot() == dict(before, parallel_min_chunk=512, buffer_size=4096, cache_lock_seconds=2.0)
    config.set(dask_block_threads=None, stream_min_bytes=64, num_threads=3)
    assert config.DASK_BLOCK_THREADS is None and config.STREAM_MIN_BYTES == 64
    assert fastrelu.get_num_threads() == 3 and _threads.settings[_threads.THREADS] == 3
    assert _threads.settings[_threads.STREAM_FROM] == 64 and _threads.settings[_threads.MIN_CHUNK] == 512


def test_a_with_block_restores_exactly_the_settings_it_set(settings_as_they_were):
    before = settings_as_they_were
    with config.set(buffer_size=7, num_threads=5) as block:
        assert (config.BUFFER_SIZE, fastrelu.get_num_threads()) == (7, 5)
        config.set(parallel_min_chunk=128)  # for good, inside the block
        fastrelu.set_num_threads(4)
    assert "buffer_size" in repr(block)
    assert config.BUFFER_SIZE == before["buffer_size"]
    assert fastrelu.get_num_threads() == before["num_threads"]
    assert _threads.settings[_threads.THREADS] == before["num_threads"]
    assert config.PARALLEL_MIN_CHUNK == 128  # not set by the block: kept


def test_a_with_block_restores_on_an_exception(settings_as_they_were):
    with pytest.raises(RuntimeError, match="inside"):
        with config.set(parallel_min_size={"relu": 3}, dask_block_threads=None):
            assert config.PARALLEL_MIN_SIZE["relu"] == 3 and config.DASK_BLOCK_THREADS is None
            raise RuntimeError("inside")
    assert snapshot() == settings_as_they_were


def test_nested_blocks_merge_sizes_and_unwind_in_order(settings_as_they_were):
    default = settings_as_they_were["parallel_min_size"]
    with config.set(parallel_min_size={"relu": 1}):
        with config.set(parallel_min_size={"softplus": 2}, parallel_min_chunk=64):
            assert dict(config.PARALLEL_MIN_SIZE) == dict(default, relu=1, softplus=2)
            assert config.PARALLEL_MIN_CHUNK == 64
        assert dict(config.PARALLEL_MIN_SIZE) == dict(default, relu=1)
        assert config.PARALLEL_MIN_CHUNK == settings_as_they_were["parallel_min_chunk"]
    assert dict(config.PARALLEL_MIN_SIZE) == default


def test_a_mapping_read_before_a_change_keeps_its_values():
    held = config.PARALLEL_MIN_SIZE
    with config.set(parallel_min_size={"relu": 0}):
        assert config.PARALLEL_MIN_SIZE["relu"] == 0
        assert held["relu"] == KERNELS["relu"].parallel_min_size
    assert config.PARALLEL_MIN_SIZE is held  # the block put the same mapping back


def test_every_setting_at_once(settings_as_they_were):
    with config.set(**GOOD):
        assert snapshot() == dict(
            GOOD, parallel_min_size=dict(settings_as_they_were["parallel_min_size"], relu=0)
        )
    assert snapshot() == settings_as_they_were


def test_set_with_nothing_changes_nothing(settings_as_they_were):
    with config.set():
        assert snapshot() == settings_as_they_were
    assert snapshot() == settings_as_they_were


# A change of every setting.
GOOD = {
    "num_threads": 1,
    "parallel_min_size": {"relu": 0},
    "parallel_min_chunk": 77,
    "stream_min_bytes": 64,
    "buffer_size": 99,
    "cache_lock_seconds": 0.5,
    "dask_block_threads": None,
}

BAD = [
    ("num_threads", [0, -1, config.MAX_THREADS + 1, True, 2.0, "2", None]),
    ("parallel_min_size", [{"relu": -1}, {"relu": 1.5}, {"relu": True}, {"relu": "4096"}, {"relu": None}]),
    ("parallel_min_size", [{"relux": 1}, {1: 1}, [("relu", 1)], 4096, None]),
    ("parallel_min_chunk", [0, -5, 1.0, True, "64", None]),
    ("stream_min_bytes", [0, -1, 64.0, False, None]),
    ("buffer_size", [0, -1, 2.5, True, np.float64(8), None]),
    ("cache_lock_seconds", [-1, -0.5, math.inf, math.nan, True, "1", None, 10**400]),
    ("dask_block_threads", [0, -1, 1.5, True, "1", config.MAX_THREADS + 1]),
]


@pytest.mark.parametrize("keyword, values", BAD, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BAD)])
def test_a_bad_value_is_refused_and_changes_nothing(settings_as_they_were, keyword, values):
    for value in values:
        # Good values for every other setting, checked before and after the bad one.
        with pytest.raises(ValueError, match=keyword) as error:
            config.set(**{**GOOD, keyword: value})
        if keyword != "parallel_min_size":  # its message names the entry at fault
            assert repr(value)[:20] in str(error.value)
        assert snapshot() == settings_as_they_were, (keyword, value)


def test_messages_name_the_setting_and_the_value():
    with pytest.raises(
        ValueError, match=r"^num_threads must be a positive integer of at most 8388607, got 0$"
    ):
        config.set(num_threads=0)
    with pytest.raises(
        ValueError, match=r"^parallel_min_size\['softplus'\] must be a non-negative integer, got -3$"
    ):
        config.set(parallel_min_size={"relu": 5, "softplus": -3})
    with pytest.raises(ValueError, match=r"no kernel named 'relux'; the kernels are \['relu', "):
        config.set(parallel_min_size={"relux": 5})
    with pytest.raises(ValueError, match=r"^buffer_size must be a positive integer, got 0$"):
        config.set(buffer_size=0)
    with pytest.raises(
        ValueError, match=r"^cache_lock_seconds must be a non-negative finite number, got inf$"
    ):
        config.set(cache_lock_seconds=math.inf)
    with pytest.raises(ValueError, match=r"^dask_block_threads must be None or a positive integer"):
        config.set(dask_block_threads=0)
    assert config.PARALLEL_MIN_SIZE["relu"] == KERNELS["relu"].parallel_min_size  # the good entry too


def test_an_unknown_setting_is_a_type_error_and_changes_nothing(settings_as_they_were):
    with pytest.raises(
        TypeError, match=r"unknown setting 'num_thread'; the settings are num_threads, "
    ) as error:
        config.set(buffer_size=5, num_thread=2)
    for keyword in [*ATTRIBUTES, "num_threads"]:
        assert keyword in str(error.value)
    with pytest.raises(TypeError, match="unknown setting 'PARALLEL_MIN_CHUNK'"):
        config.set(PARALLEL_MIN_CHUNK=64)
    assert snapshot() == settings_as_they_were


@pytest.mark.parametrize("attribute", [*ATTRIBUTES.values(), "_num_threads"])
def test_the_attributes_are_read_only(monkeypatch, attribute):
    keyword = {v: k for k, v in ATTRIBUTES.items()}.get(attribute, "num_threads")
    value = getattr(config, attribute)
    message = rf"fastrelu\.config\.{attribute} is read-only: use fastrelu\.config\.set\({keyword}="
    with pytest.raises(AttributeError, match=message):
        setattr(config, attribute, value)
    with pytest.raises(AttributeError, match=message):
        delattr(config, attribute)
    with pytest.raises(AttributeError, match="read-only"):
        monkeypatch.setattr(config, attribute, value)
    assert getattr(config, attribute) is value


def test_max_threads_is_a_constant():
    with pytest.raises(AttributeError, match="constant"):
        config.MAX_THREADS = 4
    assert config.MAX_THREADS == (1 << 23) - 1


def test_the_sizes_are_a_read_only_mapping():
    sizes = config.PARALLEL_MIN_SIZE
    assert isinstance(sizes, Mapping) and not isinstance(sizes, MutableMapping)
    assert set(sizes) == set(KERNELS) and len(sizes) == len(KERNELS)
    assert dict(sizes) == {name: kernel.parallel_min_size for name, kernel in KERNELS.items()}
    with pytest.raises(
        TypeError, match=r"read-only: use fastrelu\.config\.set\(parallel_min_size=\{'relu': 0\}\)"
    ):
        sizes["relu"] = 0
    with pytest.raises(TypeError, match="read-only"):
        del sizes["relu"]
    with pytest.raises(TypeError, match="read-only"):
        sizes["relux"] = 1
    assert dict(sizes) == {name: kernel.parallel_min_size for name, kernel in KERNELS.items()}
    assert config.set(parallel_min_size=sizes).__exit__(None, None, None) is None  # a mapping of its own kind


def test_other_attributes_of_the_module_can_still_be_set(monkeypatch):
    monkeypatch.setattr(config, "_outside_the_package", lambda: 1)
    assert config._outside_the_package() == 1


# --------------------------------------------------------------------------
# The settings take effect at the next call


def splits(function, *args):
    """How many times the call was split across threads, checking its result."""
    from fastrelu import _pool

    with _threads.limit(1):
        want = function(*args)
    before = _pool.jobs()
    assert function(*args).tobytes() == want.tobytes()
    return _pool.jobs() - before


def test_a_changed_size_splits_the_next_small_call():
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    assert splits(fastrelu.relu, x) == 0  # the fast path learns the default size
    with config.set(num_threads=2, parallel_min_size={"relu": 0}, parallel_min_chunk=64):
        assert splits(fastrelu.relu, x) == 1
        assert splits(fastrelu.softplus, x) == 0  # its own size is unchanged
        with config.set(num_threads=1):
            assert splits(fastrelu.relu, x) == 0  # one thread: nothing is split
        assert splits(fastrelu.relu, x) == 1
        with config.set(parallel_min_chunk=1000):  # one chunk's worth: too small to split
            assert splits(fastrelu.relu, x) == 0
        with config.set(parallel_min_size={"relu": 1001}):
            assert splits(fastrelu.relu, x) == 0
    assert splits(fastrelu.relu, x) == 0


def test_num_threads_one_makes_nothing_split():
    x = np.linspace(-3, 3, 1 << 16, dtype=np.float32)
    everything = dict.fromkeys(KERNELS, 0)
    with config.set(num_threads=4, parallel_min_size=everything, parallel_min_chunk=64):
        assert splits(fastrelu.softplus, x) == 1
        assert splits(fastrelu.relu_backward, x, x) == 1
        fastrelu.set_num_threads(1)
        for name in KERNELS:
            args = [x] * len(KERNELS[name].operands)
            assert splits(getattr(fastrelu, name), *args) == 0, name


# --------------------------------------------------------------------------
# The thread count


@pytest.mark.parametrize("n", [1, 2, np.int32(3), config.MAX_THREADS])
def test_thread_counts_within_bounds_are_taken(n):
    with config.set(num_threads=n):
        assert fastrelu.get_num_threads() == n and type(fastrelu.get_num_threads()) is int
        assert _threads.settings[_threads.THREADS] == n


@pytest.mark.parametrize("n", [0, -1, config.MAX_THREADS + 1, 2**64, True, 2.0, "2", None])
def test_thread_counts_out_of_bounds_are_refused_both_ways(settings_as_they_were, n):
    for change in (fastrelu.set_num_threads, lambda n: config.set(num_threads=n)):
        with pytest.raises(
            ValueError, match=r"^num_threads must be a positive integer of at most 8388607, got "
        ):
            change(n)
    assert fastrelu.get_num_threads() == settings_as_they_were["num_threads"]


def test_set_num_threads_is_config_set(settings_as_they_were):
    with config.set(num_threads=2):
        assert fastrelu.set_num_threads(3) is None
        assert fastrelu.get_num_threads() == config.get_num_threads() == 3
        assert _threads.settings[_threads.THREADS] == 3
    # The block restores what it found, whoever changed it since.
    assert fastrelu.get_num_threads() == settings_as_they_were["num_threads"]


def test_sizes_set_from_many_threads_at_once_are_all_kept():
    """Each thread changes its own kernel's size: the merges are serialised,
    so no thread's last change is lost."""
    import threading

    names = list(KERNELS)
    barrier = threading.Barrier(len(names))

    def work(name):
        barrier.wait()
        for k in range(300):
            config.set(parallel_min_size={name: k})

    threads = [threading.Thread(target=work, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert dict(config.PARALLEL_MIN_SIZE) == dict.fromkeys(names, 299)
