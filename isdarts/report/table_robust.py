"""The robust-spaces table, reports/table_robust.md: RobustDARTS's spaces S1-S4 and the DARTS space without `none`
(S5), searched on CIFAR-10, CIFAR-100 or SVHN, the cells we retrained beside the published errors a readable source
gives (isdarts/report/robust_paper_numbers.yaml).

Reads ``runs/<space>[-<dataset>]/retrain/<method>/seed_<s>/metrics.json`` and each run's genotype. A row per
(space, dataset, method, profile): the final-epoch test error over its seeds, the parameters, and the
parameter-free ops (skips, pools, noise) among the normal cell's 8 inputs, which is how RobustDARTS shows DARTS
failing in these spaces. The published numbers are 600-epoch retrains of 20-cell (CIFAR-10) or 8-cell networks, so
quick-profile rows are set beside them, never judged.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from isdarts.data.datasets import DATASETS, DEFAULT_DATASET
from isdarts.errors import ReportError
from isdarts.records import RetrainMetrics, subdirs
from isdarts.registry import SPACES
from isdarts.report import render
from isdarts.report.render import DISPLAY_LABELS, SPREAD, Cell, col, fmt_num
from isdarts.report.runs import group_by_setting
from isdarts.spaces.darts.genotype import DartsGenotype

# The variants of the DARTS space, in table order.
ROBUST_SPACES: tuple[str, ...] = tuple(name for name, spec in SPACES.items() if spec.base == "darts")
PAPER_FILE = "robust_paper_numbers.yaml"
COLUMNS = (col("space", "Space"), col("dataset", "Dataset"), col("method", "Method"), col("profile", "Profile"),
           col("seeds", "Seeds"), col("test_error", "Test err (%)", "r", SPREAD),
           col("paper_error", "Published (%)", "r"),
           col("params_m", "Params (M)", "r", SPREAD), col("param_free", "Param-free ops, normal cell", "r"),
           col("genotype", "Normal cell"))


@cache
def paper_numbers() -> tuple[str, Mapping[str, str], Mapping[tuple[str, str, str], float]]:
    """(source, {our method: the published row it sits beside}, {(row, space, dataset): test error})."""
    raw = yaml.safe_load(resources.files("isdarts.report").joinpath(PAPER_FILE).read_text())
    if raw.get("columns") != ["method", "space", "dataset", "test_error"]:
        raise ReportError(f"{PAPER_FILE}: expected columns [method, space, dataset, test_error]")
    errors = {}
    for method, space, dataset, error in raw["rows"]:
        if space not in ROBUST_SPACES or dataset not in DATASETS:
            raise ReportError(f"{PAPER_FILE}: row {[method, space, dataset, error]} names no robust space or dataset")
        errors[method, space, dataset] = float(error)
    return raw["source"], dict(raw["ours"]), errors


def _normal_cell(run: RetrainMetrics, runs_dir: Path) -> DartsGenotype:
    path = runs_dir.parent / run.genotype_file if not Path(run.genotype_file).is_absolute() else Path(run.genotype_file)
    if not path.is_file():
        raise ReportError(f"{run.genotype_file}: the genotype this retrain names is missing; run `dvc repro`")
    return DartsGenotype.from_json(json.loads(path.read_text()))


@dataclass(frozen=True)
class RobustRow:
    """One (space, dataset, method, profile): its seeds' retrains and their cells."""

    space: str
    dataset: str
    runs: tuple[RetrainMetrics, ...]
    cells: tuple[DartsGenotype, ...]

    method = property(lambda self: self.runs[0].method)
    profile = property(lambda self: self.runs[0].profile)
    label = property(lambda self: f"{DISPLAY_LABELS[self.method]} on {self.space.upper()} / "
                                  f"{DATASETS[self.dataset].label}")

    def paper_error(self) -> float | None:
        _, ours, errors = paper_numbers()
        return errors.get((ours.get(self.method, ""), self.space, self.dataset))

    def param_free(self) -> list[int]:
        return [sum(cell.param_free_per_node("normal")) for cell in self.cells]

    def row(self) -> dict[str, Cell | str]:
        errors = [r.final_test_error for r in self.runs]
        free = self.param_free()
        return {
            "space": self.space.upper(), "dataset": DATASETS[self.dataset].label,
            "method": DISPLAY_LABELS[self.method], "profile": self.profile,
            "seeds": ", ".join(str(r.seed) for r in self.runs),
            "test_error": render.spread(render.summarize(errors)),
            "paper_error": _published(self.paper_error()),
            "params_m": render.spread(render.summarize([r.params_m for r in self.runs])),
            "param_free": Cell(f"{fmt_num(statistics.fmean(free), 1)}/8", (fmt_num(statistics.fmean(free), 1),)),
            "genotype": "; ".join(f"`{_cell_text(cell)}`" for cell in self.cells),
        }

    def note(self) -> str:
        r = self.runs[0]
        return (f"- **{self.label}**: profile `{self.profile}`, seeds {', '.join(str(x.seed) for x in self.runs)}; "
                f"retrained {r.epochs} epochs on {r.train_images} training / {r.test_images} test images at "
                f"{r.image_size} px; parameter-free ops in the normal cell per seed: "
                f"{', '.join(map(str, self.param_free()))} of 8.")


def _published(error: float | None) -> Cell:
    return Cell("n/a", ("",)) if error is None else render.number(error)


def _cell_text(cell: DartsGenotype) -> str:
    return " + ".join("|".join(f"{op}~{j}" for op, j in node) for node in cell.cell("normal")[0])


def _dataset_of(folder: str, space: str) -> str | None:
    """The dataset a runs/ folder holds for `space` (runs/s1: CIFAR-10, runs/s1-svhn: SVHN); None: not this space's."""
    if folder == space:
        return DEFAULT_DATASET
    prefix, _, dataset = folder.partition("-")
    return dataset if prefix == space and dataset in DATASETS else None


def robust_rows(runs_dir: Path) -> list[RobustRow]:
    """Every finished robust-space retrain under runs_dir, in space, dataset, method order."""
    rows = []
    folders = [d.name for d in subdirs(runs_dir)]
    for space in ROBUST_SPACES:
        for dataset in DATASETS:
            found = [f for f in folders if _dataset_of(f, space) == dataset]
            for folder in found:
                retrain_dir = Path(runs_dir) / folder / "retrain"
                for group in group_by_setting(RetrainMetrics.collect(retrain_dir)):
                    for run in group:
                        if run.space != space:
                            raise ReportError(f"{retrain_dir}/{run.method}/seed_{run.seed}/metrics.json: key 'space' "
                                              f"is {run.space!r} but the file lies under {folder!r}")
                    cells = tuple(_normal_cell(run, Path(runs_dir)) for run in group)
                    rows.append(RobustRow(space, dataset, tuple(group), cells))
    return rows


def build_table_robust(runs_dir: Path = Path("runs")) -> render.Report:
    """The page: our rows, then the published numbers with nothing of ours beside them."""
    source, ours, errors = paper_numbers()
    rows = robust_rows(runs_dir)
    shown = {(row.space, row.dataset, ours.get(row.method)) for row in rows}
    published = [{"space": space.upper(), "dataset": DATASETS[dataset].label, "method": method,
                  "profile": "published", "paper_error": _published(error)}
                 for (method, space, dataset), error in sorted(errors.items(), key=_paper_order)
                 if (space, dataset, method) not in shown]
    lines = [
        "# Robust spaces — RobustDARTS's S1-S4 and the DARTS space without `none` (S5)", "",
        "The spaces of Zela et al. (ICLR 2020) that DARTS fails in, and S5 as the Λ-DARTS paper searches it: each "
        "cell's retrained test error, its parameters, and how many of the normal cell's 8 inputs are parameter-free "
        "(skip, pooling, noise): the failure RobustDARTS reports. \"Published\": the test error of the paper row the "
        f"method is set beside ({source}; DARTS (1st) beside its DARTS row, DARTS-PT beside DARTS+PT); n/a where "
        "no readable source gives one. The published cells were retrained 600 epochs with 20 cells of 36 channels "
        "(CIFAR-10) or 8 cells of 16 (CIFAR-100, SVHN): rows of the quick profile are set beside them and judged "
        "against nothing.", "",
    ]
    if rows:
        lines += ["Reproduced:", "", *(row.note() for row in rows), ""]
    else:
        lines += [f"{render.no_runs_line(Path(runs_dir) / 's1')} (the `robust` section of params.yaml lists the "
                  "spaces, datasets and methods to run)", ""]
    table_rows: list[Mapping[str, Any]] = [row.row() for row in rows] + published
    lines.append(render.table_md(COLUMNS, table_rows))
    return render.Report("table_robust", tuple(rows), "\n".join(lines).rstrip("\n") + "\n",
                         render.table_csv(COLUMNS, table_rows))


def _paper_order(item: tuple[tuple[str, str, str], float]) -> tuple[int, int, str]:
    (method, space, dataset), _ = item
    return ROBUST_SPACES.index(space), list(DATASETS).index(dataset), method
