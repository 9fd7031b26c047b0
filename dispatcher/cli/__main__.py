"""``python -m dispatcher.cli``: the same as the ``tidings`` command."""

import sys

from dispatcher.cli.main import main

sys.exit(main())
