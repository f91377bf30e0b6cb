"""DVC stage: one search of --method for --seed in a robust space (--space s1 ... s5), on --dataset."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", "--no-progress", *sys.argv[1:]]))
