"""`python -m rnnfast ...`: the command line of rnnfast.cli."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
