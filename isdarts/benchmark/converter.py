"""Rebuild the shipped NB201 table from the official NAS-Bench-201 benchmark file.

The shipped CSV was assembled from third-party exports (see ``data/PROVENANCE.md``); this
converter lets anyone holding the authors' file regenerate it through their own API,
``nas_201_api`` (pip ``nas-bench-201==2.1``), with the same columns and number format.

Usage: ``python -m isdarts.benchmark.converter NAS-Bench-201-v1_0-e61699.pth out.csv``.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from isdarts.benchmark.nb201 import CSV_COLUMNS, BenchmarkError
from isdarts.errors import GenotypeError
from isdarts.io import file_digest
from isdarts.spaces.nb201.genotype import Nb201Genotype

NB201_V1_0_FILENAME = "NAS-Bench-201-v1_0-e61699.pth"
# The authors publish no full checksum; their README says the six hex digits in the file
# name are the last six digits of the file's md5, so that suffix is all we can verify.
NB201_V1_0_MD5_SUFFIX = "e61699"
NB201_V1_0_SIZE = "2.2 GB"
# A user measured about 28 GB to initialise the API (AutoDL-Projects issue #78); we load the
# dict and the API deep-copies it, so ask for some headroom above that.
RAM_NEEDED_GB = 32
_DOWNLOAD_HINT = (
    f"Download {NB201_V1_0_FILENAME} ({NB201_V1_0_SIZE}) from the NAS-Bench-201 authors' release "
    "(Google Drive link in the README of github.com/D-X-Y/NAS-Bench-201, 'APIv1.0/FILEv1.0') "
    "and pass its path."
)
_RAM_HINT = (
    f"Opening the official NAS-Bench-201 file needs about {RAM_NEEDED_GB} GB of free RAM "
    "(the unpickled dict plus the API's deep copy of it)."
)
# Files this small (tests, excerpts) cannot exhaust memory; skip the RAM check for them.
_LARGE_FILE_BYTES = 1 << 30

# (dataset in the API, key of get_more_info) -> CSV column; metric sets as ALGORITHMS.md §1.
_ACCURACY_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("cifar10-valid", "valid-accuracy", "cifar10_valid_valid"),  # x-valid
    ("cifar10", "test-accuracy", "cifar10_test"),  # ori-test
    ("cifar100", "valid-accuracy", "cifar100_valid"),  # x-valid
    ("cifar100", "test-accuracy", "cifar100_test"),  # x-test
    ("ImageNet16-120", "valid-accuracy", "imagenet16_valid"),  # x-valid
    ("ImageNet16-120", "test-accuracy", "imagenet16_test"),  # x-test
    ("cifar100", "valtest-accuracy", "cifar100_valtest"),  # ori-test
    ("ImageNet16-120", "valtest-accuracy", "imagenet16_valtest"),  # ori-test
)
_PARAM_SOURCES: tuple[tuple[str, str], ...] = (
    ("cifar10", "params_cifar10_M"),
    ("cifar100", "params_cifar100_M"),
    ("ImageNet16-120", "params_imagenet16_M"),
)
_SEED_DATASET = "cifar10-valid"  # n_seeds counts the runs behind the C10 valid mean
_REQUIRED_KEYS = ("meta_archs", "arch2infos", "evaluated_indexes")


class LowMemoryWarning(UserWarning):
    """Free RAM looks too small to open the official benchmark file."""


def file_md5(path: str | Path) -> str:
    """Hex md5 of a file, read in chunks so a 2.2 GB file needs no extra memory."""
    return file_digest(path, "md5")


def available_ram_bytes() -> int | None:
    """RAM the kernel reports as available (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def build_table_from_api(
    pth_path: str | Path,
    out_csv: str | Path,
    *,
    check_md5: bool = True,
) -> Path:
    """Write the NB201 accuracy table (columns ``CSV_COLUMNS``) from the official benchmark file.

    ``pth_path`` is ``NAS-Bench-201-v1_0-e61699.pth`` (2.2 GB); opening it needs about
    32 GB of free RAM. With ``check_md5`` the file's md5 must end in ``e61699``, the only
    part of the checksum the authors publish. Values are ``get_more_info(i, dataset,
    hp="200", is_random=False)``: the final-epoch accuracy, mean over seeds. The output is
    written atomically; returns its path. Note the shipped table comes from the later data
    release (NATS-Bench tss), so its IN16 valid column can differ slightly from v1_0's.
    The file is unpickled (``weights_only=False``): convert only files from a source you trust.
    """
    src, out = Path(pth_path), Path(out_csv)
    if not src.is_file():
        raise BenchmarkError(f"NAS-Bench-201 file not found: {src}. {_DOWNLOAD_HINT}")
    if check_md5:
        actual = file_md5(src)
        if not actual.endswith(NB201_V1_0_MD5_SUFFIX):
            raise BenchmarkError(
                f"{src}: md5 {actual} does not end in {NB201_V1_0_MD5_SUFFIX}, the published suffix of "
                f"{NB201_V1_0_FILENAME} (the authors publish only these last six hex digits). "
                "Re-download it, or pass check_md5=False to convert a file you trust anyway."
            )
    _warn_if_low_memory(src)
    api = _open_api(src)
    rows = [_row(api, index) for index in range(len(api))]
    _write_csv_atomically(out, rows)
    return out


def _warn_if_low_memory(src: Path) -> None:
    available = available_ram_bytes()
    if src.stat().st_size >= _LARGE_FILE_BYTES and available is not None:
        if available < RAM_NEEDED_GB * (1 << 30):
            warnings.warn(
                f"only {available / (1 << 30):.1f} GB of RAM is available. {_RAM_HINT} "
                "If the process is killed, run the conversion on a larger machine.",
                LowMemoryWarning,
                stacklevel=3,
            )


def _open_api(src: Path) -> Any:
    """Load the file and wrap it in ``NASBench201API``; errors name the file and the cause."""
    import torch  # heavy imports only when converting
    from nas_201_api import NASBench201API

    try:
        # The file is a pickle of plain Python objects, not tensors, so weights_only=True
        # (the default since torch 2.6) rejects it; the API's own loader predates that flag.
        data = torch.load(src, map_location="cpu", weights_only=False)
    except MemoryError as exc:
        raise BenchmarkError(f"ran out of memory loading {src}. {_RAM_HINT}") from exc
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise BenchmarkError(
            f"{src} could not be read as a NAS-Bench-201 file ({type(exc).__name__}: {exc}). "
            f"It may be truncated or another file. {_DOWNLOAD_HINT}"
        ) from exc
    if not isinstance(data, Mapping):
        raise BenchmarkError(
            f"{src} holds a {type(data).__name__}, not a NAS-Bench-201 dict. {_DOWNLOAD_HINT}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise BenchmarkError(f"{src} is not a NAS-Bench-201 file: missing key(s) {missing}. {_DOWNLOAD_HINT}")
    try:
        return NASBench201API(dict(data), verbose=False)
    except MemoryError as exc:
        raise BenchmarkError(
            f"ran out of memory building the NAS-Bench-201 API from {src}. {_RAM_HINT}"
        ) from exc


def _row(api: Any, index: int) -> list[str]:
    """One CSV row for architecture ``index``, formatted like the shipped table."""
    arch_str = api.arch(index)
    try:
        canonical = Nb201Genotype.from_arch_str(arch_str).to_arch_str()
    except GenotypeError as exc:
        raise BenchmarkError(
            f"architecture {index} in the benchmark file is not an NB201 cell: {exc}"
        ) from exc
    if canonical != arch_str:
        raise BenchmarkError(f"architecture {index}: {arch_str!r} is not in canonical NB201 form")
    # arch2infos_dict is the API's public index -> {hp: ArchResults} map; query_by_index would
    # deep-copy the whole record for every call.
    results = api.arch2infos_dict.get(index, {}).get("200")
    if results is None:
        raise BenchmarkError(
            f"architecture {index} ({arch_str}) has no 200-epoch results in the benchmark file"
        )
    infos: dict[str, dict[str, Any]] = {}
    values: dict[str, str] = {"index": str(index), "arch_str": arch_str}
    for dataset, key, column in _ACCURACY_SOURCES:
        if dataset not in infos:
            infos[dataset] = _more_info(api, index, dataset)
        if infos[dataset].get(key) is None:
            raise BenchmarkError(
                f"architecture {index} ({arch_str}): get_more_info(dataset={dataset!r}, hp='200') "
                f"has no {key!r}, needed for column {column}"
            )
        values[column] = f"{float(infos[dataset][key]):.6f}"
    values["n_seeds"] = str(len(results.get_dataset_seeds(_SEED_DATASET)))
    for dataset, column in _PARAM_SOURCES:
        first_seed = results.get_dataset_seeds(dataset)[0]
        values[column] = f"{float(results.query(dataset, first_seed).params):.6f}"
    return [values[column] for column in CSV_COLUMNS]


def _more_info(api: Any, index: int, dataset: str) -> dict[str, Any]:
    try:
        return api.get_more_info(index, dataset, hp="200", is_random=False)
    except (KeyError, ValueError, AssertionError) as exc:
        raise BenchmarkError(
            f"architecture {index}: the benchmark file has no usable 200-epoch {dataset!r} results "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def _write_csv_atomically(out: Path, rows: Sequence[Sequence[str]]) -> None:
    """Write to a temp file beside ``out`` and rename, so readers never see half a table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)  # default \r\n line ends, as in the shipped file
            writer.writerow(CSV_COLUMNS)
            writer.writerows(rows)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m isdarts.benchmark.converter PTH OUT_CSV [--no-md5]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pth_path", help=f"path to {NB201_V1_0_FILENAME}")
    parser.add_argument("out_csv", help="where to write the table")
    parser.add_argument("--no-md5", action="store_true", help="skip the md5 suffix check")
    args = parser.parse_args(argv)
    out = build_table_from_api(args.pth_path, args.out_csv, check_md5=not args.no_md5)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
