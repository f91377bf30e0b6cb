"""DVC stage: rebuild the paper's tables (paper numbers beside ours) in reports/ from results/."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
