"""DVC stage: check the ImageNet ImageFolder tree (class folders, file counts) or build the tiny CIFAR-made one."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["imagenet-data", *sys.argv[1:]]))
