import atexit
import importlib.util
import os
import shutil
import tempfile

# A fresh on-disk cache for every test session, set before Numba is imported:
# tests must see kernels compiled from the current sources, never a stale
# cache.  A folder given in NUMBA_CACHE_DIR is used as it is; the one made
# here is removed at the end of the session.
if "NUMBA_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="fastrelu-test-cache-")
    os.environ["NUMBA_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

# fastrelu/torch.py imports PyTorch, an optional extra: its examples run
# where PyTorch is installed.
collect_ignore = [] if importlib.util.find_spec("torch") else ["fastrelu/torch.py"]
