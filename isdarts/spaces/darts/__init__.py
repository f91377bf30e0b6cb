"""The DARTS (NASNet-like) space: its ops, the genotype, the search supernet and the evaluation networks."""
