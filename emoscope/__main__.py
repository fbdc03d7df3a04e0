"""``python -m emoscope …``: the same command line as the ``emoscope`` console command."""

import sys

from emoscope.cli import main

if __name__ == "__main__":
    sys.exit(main())
