"""``python -m edgeprune``: the command line (e.g. ``venv/bin/python -m edgeprune run`` on a board)."""

import sys

from edgeprune.cli import main

sys.exit(main())
