"""The paper's own NB201 search on the CIFAR-10 subset (issue "The paper's own search, on CPU").

``profiles/paper_subset.yaml`` is the paper's NB201 search setting in every value but the data; its searches are
run outside DVC by ``scripts/run_study.py`` into ``runs/paper_subset/nb201/<method>/seed_<s>/``. Tables 1 and A.1
show them under their own label, one row per method (mean±std over its seeds), each accuracy with its difference
to the paper's number: they share the paper's network, schedule and epoch counts but not its data or its steps
per epoch, so they are compared, never judged, and never enter the quick or the paper verdicts. The collapse
figure of their per-epoch argmax cells is drawn by ``build_figure``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from isdarts.benchmark.nb201 import ACCURACY_KEYS, Nb201Table, default_table
from isdarts.errors import ReportError
from isdarts.records import SearchHistory, SearchMetrics, finished, subdirs
from isdarts.registry import METHODS
from isdarts.report import render
from isdarts.report.render import DISPLAY_LABELS, Cell, Row
from isdarts.report.runs import seed_histories

PROFILE = "paper_subset"
FOLDER = "paper_subset"  # under runs/
FIGURE = "paper_subset_nb201_collapse.png"
# The one way these runs may differ from the paper's setting (isdarts.search.loop writes it for non-full data).
DATA_MISMATCH = "data: CIFAR-10 subset"
# The training images of each data kind a search records (SearchMetrics.data_kind): the official CIFAR-10 (the
# paper's data) and the shared real subset that isdarts.data.cifar pins by md5 (SHARED_SUBSET_MD5). A search's
# metrics name only the kind, so each run's own steps per epoch are checked against the count (``_steps``).
TRAIN_IMAGES: Mapping[str, int] = MappingProxyType({"full": 50_000, "subset": 5_551})
PAPER_TRAIN_IMAGES = TRAIN_IMAGES["full"]


def _steps(images: int, method: str) -> tuple[int, int]:
    """(images that train the weights, weight steps per epoch) of an epoch over ``images`` training images under
    the paper's NB201 setting of ``method`` (isdarts.registry): its batch size, and for the bi-level methods the
    split of isdarts.search.loop (``round(train_portion * n)`` train the weights, the rest α)."""
    paper = METHODS[method].paper["nb201"]
    portion = paper.get("train_portion")
    weights = images if portion is None else round(portion * images)
    return weights, math.ceil(weights / paper["batch_size"])


def signed(diff: float) -> str:
    """A difference as the table prints it: "+0.12", "−0.46" (a typographic minus), "0.00"."""
    text = render.fmt_num(abs(diff))
    return text if float(text) == 0 else f"{'+' if diff > 0 else '−'}{text}"


@dataclass(frozen=True)
class SubsetRun:
    """One finished paper_subset search: its metrics and history, and its final cell's benchmark accuracies."""

    metrics: SearchMetrics
    history: SearchHistory
    accuracies: Mapping[str, float]
    steps_per_epoch: int


@dataclass(frozen=True)
class SubsetRow:
    """One method's paper_subset searches (by seed), as a row compared with (never judged against) the paper."""

    method: str
    runs: tuple[SubsetRun, ...]

    label = property(lambda self: DISPLAY_LABELS[self.method])
    seeds = property(lambda self: tuple(run.metrics.seed for run in self.runs))
    train_images = property(lambda self: TRAIN_IMAGES[self.runs[0].metrics.data_kind])
    weight_images = property(lambda self: _steps(self.train_images, self.method)[0])
    steps_per_epoch = property(lambda self: self.runs[0].steps_per_epoch)
    paper_weight_images = property(lambda self: _steps(PAPER_TRAIN_IMAGES, self.method)[0])
    paper_steps = property(lambda self: _steps(PAPER_TRAIN_IMAGES, self.method)[1])
    cost_unit = property(lambda self: self.runs[0].metrics.cost_unit)

    @property
    def setting(self) -> str:
        """The rows' own label: "paper settings, subset data: 5,551 training images, 87 steps per epoch against
        782"."""
        return (f"paper settings, {self.runs[0].metrics.data_kind} data: {self.train_images:,} training images, "
                f"{self.steps_per_epoch} steps per epoch against {self.paper_steps}")

    def summary(self, key: str) -> render.Summary:
        return render.summarize([run.accuracies[key] for run in self.runs])

    def cell(self, key: str, paper: float | None) -> Cell:
        """"mean±std (our mean − paper)": "93.90±0.20 (−0.46)", one run "93.56±0.00 (n=1, −0.80)"; no verdict.
        CSV: mean, std, and the comparison in the verdict column."""
        summary = self.summary(key)
        ours = render.spread(summary)
        if paper is None:
            return Cell(ours.md, (*ours.csv, "compared, not judged: no paper number"))
        diff = signed(summary.mean - paper)
        md = (f"{ours.md[:-1]}, {diff})" if summary.n == 1 else f"{ours.md} ({diff})")
        return Cell(md, (*ours.csv, f"compared, not judged: {summary.mean - paper:+.2f} vs paper"))

    def row(self, paper: Mapping[str, float | None] | None) -> Row:
        hours = render.summarize([run.metrics.search_hours for run in self.runs]).mean
        return {"source": "ours", "method": self.label, "profile": self.setting, "n_runs": str(len(self.runs)),
                "seeds": " ".join(map(str, self.seeds)), "cost": render.cost(hours, self.cost_unit, "hours"),
                **{key: self.cell(key, None if paper is None else paper[key]) for key in ACCURACY_KEYS}}

    def note(self) -> str:
        """"- **IS-DARTS** (…): profile `paper_subset`, 4 runs (seeds 0, 1, 2, 3), …; 5,551 training images, 87
        steps per epoch against the paper's 782 = ⌈50,000 / 64⌉. Differs from the paper in: …"."""
        s = "" if len(self.runs) == 1 else "s"
        seeds_by_device: dict[str, list[str]] = {}
        for run in self.runs:
            seeds_by_device.setdefault(run.metrics.device_name, []).append(str(run.metrics.seed))
        devices = (next(iter(seeds_by_device)) if len(seeds_by_device) == 1 else ", ".join(
            f"{name} for seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"
            for name, seeds in seeds_by_device.items()))
        batch = METHODS[self.method].paper["nb201"]["batch_size"]
        split = ("" if self.weight_images == self.train_images
                 else f" of which {self.weight_images:,} train the weights (the rest α)")
        paper_split = ("" if self.paper_weight_images == PAPER_TRAIN_IMAGES
                       else f" (the weights' {self.paper_weight_images:,} of its {PAPER_TRAIN_IMAGES:,} images)")
        return (f"- **{self.label}** (paper settings, {self.runs[0].metrics.data_kind} data): profile `{PROFILE}`, "
                f"{len(self.runs)} run{s} (seed{s} {', '.join(map(str, self.seeds))}), search cost measured in "
                f"{self.cost_unit} on {devices}; {self.train_images:,} training images{split}, "
                f"{self.steps_per_epoch} weight steps per epoch against the paper's {self.paper_steps} = "
                f"⌈{self.paper_weight_images:,} / {batch}⌉{paper_split}. {self.cost_note()} "
                f"Differs from the paper in: {DATA_MISMATCH}.")

    def cost_note(self) -> str:
        """What the search cost counts: "Search cost: the sum of each run's epoch wall times (1.67, 4.01 CPU-hours),
        which counts in full the time the machine gave other work; at its median epoch (1.57, 2.47 min) each run's
        30 epochs take 0.78, 1.24 CPU-hours." These searches run beside other work, paused at times; an epoch's
        median time leaves most of that out."""
        def listed(values: Sequence[float]) -> str:
            return ", ".join(map(render.fmt_num, values))

        epochs = [len(run.history.epochs) for run in self.runs]
        medians = [statistics.median(e.epoch_seconds for e in run.history.epochs) for run in self.runs]
        return (f"Search cost: the sum of each run's epoch wall times "
                f"({listed([run.metrics.search_hours for run in self.runs])} {self.cost_unit}), which counts in "
                f"full the time the machine gave other work; at its median epoch ({listed([m / 60 for m in medians])} "
                f"min) each run's {'/'.join(map(str, sorted(set(epochs))))} epochs take "
                f"{listed([m * n / 3600 for m, n in zip(medians, epochs, strict=True)])} {self.cost_unit}.")


def _read_run(method: str, seed: int, history_path: Path, benchmark: Nb201Table) -> SubsetRun:
    """One seed folder's run, checked to be what the rows claim: a paper_subset NB201 search of ``method`` that
    differs from the paper's setting in its data only, with the steps per epoch that data gives."""
    where = history_path.parent
    metrics, history = SearchMetrics.read(where / "metrics.json"), SearchHistory.read(history_path)
    for name, record in (("metrics.json", metrics), ("history.json", history)):
        if (record.space, record.method, record.seed) != ("nb201", method, seed):
            raise ReportError(f"{where / name}: space/method/seed {record.space}/{record.method}/{record.seed} "
                              f"do not match its folder nb201/{method}/seed_{seed}")
    if metrics.profile != PROFILE:
        raise ReportError(f"{where / 'metrics.json'}: key 'profile' is {metrics.profile!r}; the runs under "
                          f"{FOLDER}/ must be of profile {PROFILE!r}")
    if tuple(metrics.paper_mismatches) != (DATA_MISMATCH,) or metrics.data_kind not in TRAIN_IMAGES:
        raise ReportError(f"{where / 'metrics.json'}: differs from the paper in {list(metrics.paper_mismatches)} "
                          f"(data {metrics.data_kind!r}); a {PROFILE} run must differ in its data only "
                          f"({DATA_MISMATCH!r})")
    last = history.epochs[-1] if history.epochs else None
    if last is None or last.weight_steps is None or last.weight_steps % last.epoch:
        raise ReportError(f"{history_path}: its last epoch records no whole number of weight steps per epoch")
    steps = last.weight_steps // last.epoch
    expected = _steps(TRAIN_IMAGES[metrics.data_kind], method)[1]
    if steps != expected:
        raise ReportError(f"{history_path}: {steps} weight steps per epoch, but the paper's {method} setting on the "
                          f"{TRAIN_IMAGES[metrics.data_kind]:,}-image {metrics.data_kind} data takes {expected}")
    accuracies = benchmark.lookup(metrics.arch_str or metrics.genotype).accuracies()
    return SubsetRun(metrics, history, MappingProxyType(accuracies), steps)


def read_rows(folder: Path, benchmark: Nb201Table | None = None) -> tuple[SubsetRow, ...]:
    """One row per method with finished searches under ``<folder>/nb201/<method>/seed_<s>/`` (history.json and
    metrics.json), in the registry's order; none when the folder is absent."""
    space = Path(folder) / "nb201"
    unknown = [d.name for d in subdirs(space) if d.name not in DISPLAY_LABELS]
    if unknown:
        raise ReportError(f"{space}: folders {unknown} are not methods of isdarts.registry")
    rows = []
    for method in DISPLAY_LABELS:
        found = [(seed, path) for seed, path in seed_histories(space / method)
                 if finished(path.parent / "metrics.json")]
        if not found:
            continue
        benchmark = benchmark if benchmark is not None else default_table()
        runs = tuple(_read_run(method, seed, path, benchmark) for seed, path in found)
        for key in ("cost_unit", "data_kind"):
            values = sorted({getattr(run.metrics, key) for run in runs})
            if len(values) != 1:
                raise ReportError(f"{space / method}: key {key!r} differs across seeds ({', '.join(values)})")
        rows.append(SubsetRow(method, runs))
    return tuple(rows)


def compared_lines(rows: Sequence[SubsetRow]) -> list[str]:
    """The page's block about the rows (none without rows): what they are, their notes, the figure that draws them,
    and the legend line with the rule they are shown under."""
    if not rows:
        return []
    return [
        f"Paper settings, subset data ({', '.join(row.label for row in rows)}): searches of "
        f"`profiles/{PROFILE}.yaml`, run outside DVC by `scripts/run_study.py` into `runs/{FOLDER}/`; each run's "
        f"final cell is looked up in the NB201 benchmark, and `figures/{FIGURE}` draws each run's argmax cell after "
        "every epoch.", "",
        *(row.note() for row in rows), "",
        "Legend (paper settings, subset data): mean±std (our mean − paper number), no ✓/✗. These rows share the "
        "paper's network, schedule and epoch counts but not its data or its steps per epoch, so they are compared "
        "with the paper, not judged, and enter neither the quick rows' verdicts nor the paper's.", ""]


def build_figure(rows: Sequence[SubsetRow], folder: Path, figures_dir: Path) -> Path | None:
    """``figures/paper_subset_nb201_collapse.png`` of the runs' per-epoch argmax cells, when there are runs;
    without, no figure (and none left from an earlier build)."""
    out = Path(figures_dir) / FIGURE
    if not rows:
        out.unlink(missing_ok=True)
        return None
    from isdarts.report.figures import plot_collapse  # matplotlib: only once there is something to draw

    return plot_collapse(Path(folder), out, "NB201, the paper's settings on the CIFAR-10 subset: the cell each "
                         "search would return if it stopped there")
