import os
import tempfile

# A fresh on-disk cache for every test session, set before Numba is imported:
# tests must see kernels compiled from the current sources, never a stale cache.
os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="fastrelu-test-cache-"))
