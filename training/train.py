"""Training entry point: ``python training/train.py --config training/configs/NAME.toml``.

The same as ``emoscope train``; kept beside the recipes so they can be run from here.
"""

import sys

from emoscope.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
