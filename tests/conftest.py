"""The tiers of the tests (pyproject.toml): the default run, ``-m slow`` and
``-m exhaustive``.  A test belongs to one: a long check leaves the default run
by its marker, and runs in the tier the marker names."""

import pytest

TIERS = ("slow", "exhaustive")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        tiers = [name for name in TIERS if item.get_closest_marker(name)]
        if len(tiers) > 1:
            raise pytest.UsageError(f"{item.nodeid} is marked {' and '.join(tiers)}: one tier per test")
