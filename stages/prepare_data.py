"""DVC stage: locate or download CIFAR-10 (or --dataset cifar100 / svhn), verify it, store it as data/prepared
(data/prepared-<dataset>): uint8 arrays + a manifest naming the dataset and its normalisation."""

import sys

from isdarts.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare-data", *sys.argv[1:]]))
