"""``python -m cldyn_lib``: the command line (see :mod:`cldyn_lib.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
