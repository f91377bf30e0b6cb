"""DVC stage: locate or download CIFAR-10, verify it, store it as data/prepared (uint8 arrays + manifest)."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare-data", *sys.argv[1:]]))
