"""DVC stage: look each seed's searched cell up in NAS-Bench-201 and write results/nb201_<method>.json."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["collect", *sys.argv[1:]]))
