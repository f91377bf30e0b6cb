"""NAS-Bench-201 lookups: the shipped 200-epoch table and a converter from the official file."""

from isdarts.benchmark.nb201 import (
    ACCURACY_KEYS,
    ACCURACY_LABELS,
    BenchmarkError,
    Nb201Record,
    Nb201Table,
    default_table,
    lookup,
)

__all__ = [
    "ACCURACY_KEYS",
    "ACCURACY_LABELS",
    "BenchmarkError",
    "Nb201Record",
    "Nb201Table",
    "default_table",
    "lookup",
]
