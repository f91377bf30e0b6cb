"""DVC stage: retrain a searched DARTS-space cell on CIFAR-10 from scratch (resumes after a kill)."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", "--no-progress", *sys.argv[1:]]))
