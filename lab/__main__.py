"""``python -m lab``: the lab command line."""

import sys

from lab.cli import main

sys.exit(main())
