"""``python -m fastrelu``: the command line (``info``, ``bench``, ``demo``)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
