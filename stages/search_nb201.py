"""DVC stage: one NAS-Bench-201 search of --method for --seed (resumes after a kill)."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", "--space", "nb201", "--no-progress", *sys.argv[1:]]))
