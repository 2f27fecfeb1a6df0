"""``python -m mason``: the same command line as the ``mason`` script."""

import sys

from .cli import main

sys.exit(main())
