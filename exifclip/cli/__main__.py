"""``python -m exifclip.cli``: the command line (torchrun starts ``-m exifclip.cli train ...``)."""

import sys

from . import main

sys.exit(main())
