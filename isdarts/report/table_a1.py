"""Table A.1 rebuilt: IIM and shrinking ablated on NAS-Bench-201 (IS-DARTS vs I-DARTS vs S-DARTS).

The lookup results of the ablation's methods (the paper data's table_a1.ours) in Table 1's rows and columns (plus
the seeds in CSV), beside the paper's single numbers (no std); only paper-profile runs are judged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from isdarts.errors import ReportError
from isdarts.report import paper_subset, render, table1
from isdarts.report.paper import CLAIMS, TABLE_A1, TABLE_A1_OURS
from isdarts.report.render import COST, DISPLAY_LABELS, col, fmt_num

# The IS-DARTS search on CIFAR-100 of the paper's Appendix C, as `isdarts collect --dataset cifar100` writes it.
C100_RESULTS = "nb201-cifar100_isdarts.json"

# The ablation's methods in the paper's row order; IS-DARTS is read from the same file as Table 1's.
LABELS: Mapping[str, str] = MappingProxyType({m: DISPLAY_LABELS[m] for m in TABLE_A1_OURS})

# The paper's single accuracies by our method.
PAPER_BY_METHOD = MappingProxyType({m: next(p.accuracies for p in TABLE_A1 if p.method == row)
                                    for m, row in TABLE_A1_OURS.items() if row is not None})

# The same ±1 pp of accuracy Table 1 uses: the same benchmark numbers, so the same yardstick.
TOLERANCE: float = table1.TOLERANCE

COLUMNS = (*table1.HEAD, col("seeds"), COST, *table1.ACCURACIES)


def build_table_a1(results_dir: Path = Path("results"),
                   subset_rows: Sequence[paper_subset.SubsetRow] = ()) -> render.Report:
    """Table A.1 from ``results/nb201_<method>.json`` of the ablation's methods (those that exist); the
    ``subset_rows`` (paper_subset.read_rows) of the ablation's methods print beside them, compared with the
    paper's numbers but not judged."""
    results_dir = Path(results_dir)
    ours, absent = [], []
    for method, label in LABELS.items():
        path = results_dir / f"nb201_{method}.json"
        if not path.is_file():
            absent.append(f"{label} (`{path}`)")
            continue
        row = table1.read_row(path, LABELS, PAPER_BY_METHOD)
        if row.method != method:
            raise ReportError(f"{path}: key 'method' is {row.method!r} but the file is named for {method!r}")
        ours.append(row)
    notes = [row.note(with_device=False) for row in ours]
    if notes and absent:
        notes.append(f"- not run: {', '.join(absent)}; run `dvc repro`")
    looked_for = ", ".join(f"nb201_{m}.json" for m in LABELS)
    subset = [row for row in subset_rows if row.method in LABELS]
    empty = render.no_runs_line(results_dir) + f" (looked for {looked_for})"
    if subset:  # the paper's rows are then not the only ones shown
        empty = empty.replace(" Only the paper's rows are shown.", "")
    return render.report(
        "table_a1", COLUMNS,
        [*(table1.given_row("paper", p.method, "paper", p.accuracies) for p in TABLE_A1), *(row.row() for row in ours),
         *(row.row(PAPER_BY_METHOD.get(row.method)) for row in subset)],
        ours, "Table A.1 — ablation on NAS-Bench-201: IS-DARTS vs I-DARTS vs S-DARTS",
        "Paper: IS-DARTS (AAAI 2024), Table A.1 — accuracy (%) of the cell searched on CIFAR-10, single numbers "
        "(no std). I-DARTS is IIM without shrinking, S-DARTS shrinking without IIM (§3.5; the appendix swaps the "
        "two names). Reproduced rows: the NB201 benchmark's 200-epoch accuracies of each searched cell, mean±std "
        "(sample std) over our seeds; search cost is the mean per run, in the unit it was measured in.",
        notes=notes, empty=empty,
        what="cell", difference="our mean − paper number", tolerance=TOLERANCE,
        compared=paper_subset.compared_lines(subset), compared_rows=subset, tail=cifar100_search_lines(results_dir),
    )


def cifar100_search_lines(results_dir: Path) -> list[str]:
    """The paper's Appendix C row, IS-DARTS searched on CIFAR-100 (its cell's NB201 CIFAR-100 accuracies), with
    ours beside it when its results file exists, else how to make it."""
    paper = (f"the paper (Appendix C) {fmt_num(CLAIMS.c100_search_cifar100_valid)} valid / "
             f"{fmt_num(CLAIMS.c100_search_cifar100_test)} test")
    path = Path(results_dir) / C100_RESULTS
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
            mean, n = doc["summary"]["mean"], doc["summary"]["n_runs"]
            ours = (f"ours {fmt_num(mean['cifar100_valid'])} valid / {fmt_num(mean['cifar100_test'])} test, mean of "
                    f"{n} seed(s), profile `{doc['profile']}` (`{path.name}`)")
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"{path}: not an NB201 results file ({exc}); re-run `isdarts collect --dataset "
                              "cifar100`") from exc
    else:
        ours = ("ours not run: CIFAR-100 is not in this checkout (`isdarts prepare-data --dataset cifar100`, "
                "`isdarts search --dataset cifar100 --seed 0`, `isdarts collect --dataset cifar100 --method isdarts`, "
                "then `dvc repro report`)")
    return [f"**IS-DARTS searched on CIFAR-100** (the cell's NB201 CIFAR-100 accuracies): {paper}; {ours}."]
