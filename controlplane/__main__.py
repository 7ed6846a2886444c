"""``python -m controlplane``: the same as the ``ttcs-control`` console script."""

import sys

from controlplane.cli import main

sys.exit(main())
