"""The NAS-Bench-201 space: its ops, the cell genotype and the search supernet."""
