"""``python -m exifclip``: the command line (see :mod:`exifclip.cli`)."""

import sys

from .cli import main

sys.exit(main())
