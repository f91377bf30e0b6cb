"""DVC stage: one IS-DARTS search on NAS-Bench-201 for the seed given as --seed (resumes after a kill)."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", "--no-progress", *sys.argv[1:]]))
