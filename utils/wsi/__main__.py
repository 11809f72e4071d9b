"""``python -m utils.wsi``: see :mod:`utils.wsi.cli`."""

import sys

from utils.wsi.cli import main

sys.exit(main())
