"""Search spaces: ops, cells, supernets and genotypes (NB201, DARTS)."""
