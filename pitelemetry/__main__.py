"""``python -m pitelemetry`` is the ``pitelemetry`` command."""

import sys

from pitelemetry.cli import main

sys.exit(main())
