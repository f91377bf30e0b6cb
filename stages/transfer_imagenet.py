"""DVC stage: train a searched DARTS-space cell on ImageNet in the mobile setting (one process; see README
for the torchrun command that runs the same step on several GPUs or nodes)."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["transfer", "--no-progress", *sys.argv[1:]]))
