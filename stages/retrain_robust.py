"""DVC stage: retrain a cell searched in a robust space (--space) on the dataset it was searched on (--dataset)."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", "--no-progress", *sys.argv[1:]]))
