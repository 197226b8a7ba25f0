"""``python -m gnnkit``: the same as the ``gnnkit`` command."""

import sys

from gnnkit.cli import main

sys.exit(main())
