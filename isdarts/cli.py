"""`isdarts` command line: the pipeline's steps for use outside DVC, with clear errors and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from isdarts.benchmark.nb201 import ACCURACY_LABELS, default_table
from isdarts.config import load_params
from isdarts.data.datasets import DATASETS, DEFAULT_DATASET, dataset_info
from isdarts.errors import (
    BenchmarkError,
    CheckpointError,
    ConfigError,
    DataError,
    GenotypeError,
    NonFiniteLossError,
    OutputWriteError,
    Preempted,
    ReportError,
)
from isdarts.pipeline.imagenet import prepare_imagenet, transfer
from isdarts.pipeline.lookup import lookup_nb201
from isdarts.pipeline.prepare import prepare_data
from isdarts.pipeline.report import build_report
from isdarts.pipeline.retrain import retrain
from isdarts.pipeline.search import search
from isdarts.registry import METHODS, SPACES
from isdarts.spaces.darts.genotype import load_named_genotype, named_genotypes
from isdarts.spaces.nb201.genotype import Nb201Genotype
from isdarts.tracking import UI_TRAINING_MODE, disable_telemetry, resolve_tracking_uri
from isdarts.tracking_backlog import BACKLOG_NAME, replay

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3
# The method a command runs or trains when --method is not given: the registry's first row (IS-DARTS).
DEFAULT_METHOD = next(iter(METHODS))


def _setup() -> None:
    disable_telemetry()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # MLflow and alembic are chatty at INFO; their warnings still show.
    for noisy in ("alembic", "mlflow", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A failing store (disk full, locked) makes MLflow log the whole SQLAlchemy traceback; the tracker's own
    # warning already names the error and says the run goes on without tracking.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def run_guarded(action: Callable[[], object]) -> int:
    """Run one step; turn known failures into a one-line error and a non-zero exit code."""
    try:
        action()
    except (ConfigError, DataError, BenchmarkError, GenotypeError, ReportError, FileNotFoundError) as exc:
        print(f"isdarts: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CheckpointError, NonFiniteLossError, OutputWriteError, ValueError) as exc:
        print(f"isdarts: error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except Preempted as stop:
        print(f"isdarts: {stop}", file=sys.stderr)
        return 128 + stop.signum  # the shell's code for "ended by this signal", as schedulers expect
    except KeyboardInterrupt:
        print("isdarts: interrupted; the last completed epoch's checkpoint is kept", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an environment failure: one line for the user, the traceback in a file
        log_path = _write_traceback(exc)
        print(
            f"isdarts: error: unexpected {type(exc).__name__}: {exc} (full traceback in {log_path}; "
            "outputs of this step were not written, and a re-run resumes from the last checkpoint)",
            file=sys.stderr,
        )
        return EXIT_RUN_FAILED
    return 0


def _write_traceback(exc: BaseException) -> Path:
    """Save the traceback of an unexpected failure under $ISDARTS_LOG_DIR (default logs/); returns its path."""
    log_dir = Path(os.environ.get("ISDARTS_LOG_DIR", "logs"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = log_dir / f"isdarts-error-{stamp}-{os.getpid()}.log"
    text = f"isdarts {' '.join(sys.argv)}\n" + "".join(traceback.format_exception(exc))
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError:  # the log folder itself is unwritable: the traceback goes to stderr instead
        print(text, file=sys.stderr)
        return Path("<stderr>")
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=__package__,  # the package's name, which the console script bears
        description="IS-DARTS and its DARTS-family peers: search, retraining, ImageNet transfer, benchmark "
        "lookups and the paper's tables. `dvc repro` runs the same steps as a pipeline.",
    )
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    prepare_cmd = sub.add_parser(
        "prepare-data", help="locate or download a dataset (default CIFAR-10), verify it and store it for the search"
    )
    _dataset_arg(prepare_cmd, "data/prepared, or data/prepared-<dataset> for the others")
    prepare_cmd.add_argument(
        "--svhn-extra", action="store_true", help="SVHN: append the 531k 'extra' images to the training split"
    )

    search_cmd = sub.add_parser("search", help="run (or resume) one search of one method for one seed")
    search_cmd.add_argument("--space", choices=tuple(SPACES), default="nb201")
    search_cmd.add_argument("--method", default=DEFAULT_METHOD, help=", ".join(METHODS))
    search_cmd.add_argument("--seed", type=int, required=True)
    search_cmd.add_argument("--rate", default=None, help="a darts.sweep rate name (Table A.2), e.g. r0_143")
    _dataset_arg(search_cmd, "reads its prepared folder; runs/<space>-<dataset>/... for the others")
    _run_args(search_cmd, "runs/<space>/.../seed_N")

    lookup_cmd = sub.add_parser("lookup", help="NB201 200-epoch accuracies of an architecture string or genotype JSON")
    lookup_cmd.add_argument("arch", help="NB201 string like '|nor_conv_3x3~0|+|...|' or a genotype.json path")

    collect_cmd = sub.add_parser(
        "collect", help="look up every seed's NB201 cell and write results/nb201_<method>.json"
    )
    collect_cmd.add_argument("--method", default=None, help="one method (default: every method in nb201.methods)")
    _dataset_arg(collect_cmd, "the searches' dataset; results/nb201-<dataset>_<method>.json for the others")

    retrain_cmd = sub.add_parser(
        "retrain", help="train a DARTS-space genotype from scratch on CIFAR-10 (or --dataset cifar100, svhn)"
    )
    _genotype_args(retrain_cmd)
    retrain_cmd.add_argument("--rate", default=None, help="retrain a sweep point's cell (darts.sweep rate name)")
    retrain_cmd.add_argument("--space", choices=[s for s, spec in SPACES.items() if "darts" in (s, spec.base)],
                             default="darts", help="the space the cell was searched in (robust spaces: robust.retrain)")
    _dataset_arg(retrain_cmd, "and, without --genotype, the cell searched on it; runs/darts-<dataset>/...")
    _run_args(retrain_cmd, "runs/darts/retrain/<method>/seed_N")

    sub.add_parser("imagenet-data", help="check the ImageNet tree (or build the tiny one) and write its manifest")

    transfer_cmd = sub.add_parser(
        "transfer", help="train a DARTS-space genotype on ImageNet; launch with torchrun for several GPUs/nodes"
    )
    _genotype_args(transfer_cmd)
    _run_args(transfer_cmd, "runs/darts/imagenet/<method>/seed_N")

    sub.add_parser("report", help="rebuild the paper's tables and figures in reports/ from the stage outputs")

    cluster_cmd = sub.add_parser("cluster", help="run the pipeline's out-of-date stages as SLURM jobs (README)")
    cluster_sub = cluster_cmd.add_subparsers(dest="cluster_command", required=True)
    submit_cmd = cluster_sub.add_parser("submit", help="one job per out-of-date stage, dependencies as in dvc.yaml")
    submit_cmd.add_argument("targets", nargs="*", help="stages (as `dvc repro` takes them); default: all")
    submit_cmd.add_argument("--dry-run", action="store_true", help="write the job scripts, submit nothing")
    cluster_sub.add_parser("status", help="each submitted stage's job, its state and its log")
    collect_jobs = cluster_sub.add_parser("collect", help="`dvc commit` the stages whose jobs finished")
    collect_jobs.add_argument("--wait", action="store_true", help="first wait until no submitted job is queued")

    sync_cmd = sub.add_parser(
        "tracking-sync", help=f"send what MLflow missed during an outage ({BACKLOG_NAME} files) to the store"
    )
    sync_cmd.add_argument("backlogs", nargs="+", type=Path, help=f"{BACKLOG_NAME} files, e.g. runs/**/{BACKLOG_NAME}")
    sync_cmd.add_argument("--tracking-uri", default=None, help="store to send to (default: the one that failed)")

    from isdarts import tracking_server  # light (no mlflow import); here, beside its only use

    tracking_server.add_arguments(sub.add_parser(
        "tracking-server", help="run an MLflow server on PostgreSQL that a cluster's jobs log to (README)"
    ))

    ui_cmd = sub.add_parser(
        "ui", help="start the MLflow UI on this project's store and print the link that opens its runs tables"
    )
    ui_cmd.add_argument("--host", default="127.0.0.1")
    ui_cmd.add_argument("--port", type=int, default=5000)
    return parser


def _ui(host: str, port: int) -> int:
    """Replace this process by `mlflow ui` over the project's store, after printing where to point a browser.

    MLflow 3.17's UI opens every experiment in its GenAI mode (a traces page that says "No data") whatever
    the experiment's kind tag says, unless the link asks for the model-training mode; once a user has been
    there the browser remembers it.
    """
    uri = resolve_tracking_uri()
    if uri.startswith(("http://", "https://")):  # a tracking server serves its own UI
        print(f"MLFLOW_TRACKING_URI is a tracking server: open {uri.rstrip('/')}/#/experiments?{UI_TRAINING_MODE}")
        return 0
    disable_telemetry()
    print(f"MLflow store {uri}\nopen http://{host}:{port}/#/experiments?{UI_TRAINING_MODE}\n"
          "(the runs tables; MLflow opens on its GenAI pages otherwise)", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    os.execv(sys.executable, cmd)
    return 0  # not reached


def _genotype_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default=DEFAULT_METHOD, help="whose searched cell (with --seed) to train")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument(
        "--genotype", default=None,
        help="a genotype JSON file, or a shipped name (DARTS_V1, DARTS_V2, ISDARTS); default: the method's search",
    )


def _dataset_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--dataset", choices=tuple(DATASETS), default=DEFAULT_DATASET, help=f"default {DEFAULT_DATASET}: {what}"
    )


def _run_args(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--stage", default=None, help="DVC stage name, recorded as an MLflow tag")
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default {default_out})")
    p.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def _genotype_file(value: str | None) -> Path | None:
    """A genotype JSON path, or the packaged file of a named genotype of the literature."""
    if value is None:
        return None
    path = Path(value)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"genotype file {path} not found")
        return path
    load_named_genotype(value)  # raises GenotypeError listing the shipped names
    name = next(n for n in named_genotypes() if n.upper() == value.upper())
    return Path(str(resources.files("isdarts.spaces").joinpath("genotypes").joinpath(f"{name}.json")))


def _lookup(arch: str) -> None:
    path = Path(arch)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"genotype file {path} not found")
        target: str | Nb201Genotype = Nb201Genotype.from_json(json.loads(path.read_text()))
    else:
        target = arch
    record = default_table().lookup(target)
    print(f"NB201 index {record.index}: {record.arch_str}")
    accuracies = record.accuracies()
    for key, label in ACCURACY_LABELS.items():
        print(f"  {label:<15} {accuracies[key]:6.2f}")


def _sync(backlogs: list[Path], tracking_uri: str | None) -> None:
    for path in backlogs:
        if not path.is_file():
            raise FileNotFoundError(f"backlog file {path} not found")
        print(f"{path}: sent to MLflow run {replay(path, tracking_uri)}")


def _cluster(args: argparse.Namespace) -> None:
    # Loaded here: it imports DVC, which no stage or search should pay for at start-up.
    from isdarts.cluster import commands

    root = commands.check_root(Path.cwd())
    if args.cluster_command == "submit":
        print("\n".join(commands.submit(root, args.targets, args.params, dry_run=args.dry_run)))
    elif args.cluster_command == "status":
        states = commands.stage_states(root)
        print("\n".join(f"{s.stage:<40} job {s.job_id:<8} {s.state:<30} {s.log}" for s in states)
              or "nothing was submitted from this checkout")
    else:
        if args.wait:
            commands.wait(root)
        lines, complete = commands.collect(root)
        print("\n".join(lines))
        if not complete:
            raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup()
    if args.command == "lookup":
        return run_guarded(lambda: _lookup(args.arch))
    if args.command == "tracking-sync":
        return run_guarded(lambda: _sync(args.backlogs, args.tracking_uri))
    if args.command == "ui":
        return _ui(args.host, args.port)
    if args.command == "tracking-server":
        from isdarts.tracking_server import serve_from_args  # as its parser: loaded only for this command

        return run_guarded(lambda: serve_from_args(args))
    if args.command == "cluster":
        return run_guarded(lambda: _cluster(args))

    def action() -> None:
        params = load_params(args.params)
        if getattr(args, "seed", 0) < 0:
            raise ConfigError(f"--seed {args.seed}: expected a non-negative integer")
        if args.command == "prepare-data":
            manifest = prepare_data(params, dataset=args.dataset, svhn_extra=args.svhn_extra)
            print(f"prepared {manifest['kind']} {dataset_info(args.dataset).label}: {manifest['counts']}")
        elif args.command == "search":
            metrics = search(
                params, args.space, args.method, args.seed, args.dataset, rate=args.rate, out_dir=args.out,
                checkpoint_dir=args.checkpoints, stage=args.stage, progress=not args.no_progress,
            )
            on = "" if args.dataset == DEFAULT_DATASET else f" on {dataset_info(args.dataset).label}"
            print(f"{args.space} {args.method} seed {args.seed}{on}: {metrics['genotype']}")
        elif args.command == "collect":
            for method in [args.method] if args.method else params.nb201.methods:
                result = lookup_nb201(params, method, dataset=args.dataset)
                print(method, json.dumps(result["summary"], indent=2))
        elif args.command == "retrain":
            metrics = retrain(
                params, args.method, args.seed, args.dataset, space=args.space,
                genotype_file=_genotype_file(args.genotype), rate=args.rate, out_dir=args.out,
                checkpoint_dir=args.checkpoints, stage=args.stage, progress=not args.no_progress,
            )
            print(f"test error {metrics['final_test_error']:.2f}% (best {metrics['best_test_error']:.2f}%), "
                  f"{metrics['params_m']:.2f}M params")
        elif args.command == "imagenet-data":
            manifest = prepare_imagenet(params)
            totals, n_classes = manifest["split_totals"], len(manifest["classes"])
            print(f"ImageFolder {manifest['root']}: {totals} images, {n_classes} classes")
        elif args.command == "transfer":
            metrics = transfer(
                params, args.method, args.seed, genotype_file=_genotype_file(args.genotype), out_dir=args.out,
                checkpoint_dir=args.checkpoints, stage=args.stage,
            )
            if metrics is not None:  # rank 0
                print(f"top-1 error {metrics['top1_error']:.2f}%, top-5 {metrics['top5_error']:.2f}%, "
                      f"{metrics['params_m']:.2f}M params, {metrics['madds_m']:.0f}M MAdds")
        elif args.command == "report":
            for path in build_report():
                print(f"wrote {path}")

    return run_guarded(action)


if __name__ == "__main__":
    sys.exit(main())
