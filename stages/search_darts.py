"""DVC stage: one DARTS-space search of --method for --seed, or one Table A.2 sweep point (--rate)."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", "--space", "darts", "--no-progress", *sys.argv[1:]]))
