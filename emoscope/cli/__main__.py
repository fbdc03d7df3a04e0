"""``python -m emoscope.cli`` (what ``accelerate launch -m emoscope.cli`` runs)."""

import sys

from emoscope.cli import main

sys.exit(main())
