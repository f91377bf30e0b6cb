"""`isdarts` command line: the pipeline's steps for use outside DVC, with clear errors and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3


def _setup() -> None:
    from isdarts.tracking import disable_telemetry

    disable_telemetry()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # MLflow and alembic are chatty at INFO; their warnings still show.
    for noisy in ("alembic", "mlflow", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_guarded(action: Callable[[], object]) -> int:
    """Run one step; turn known failures into a one-line error and a non-zero exit code."""
    from isdarts.benchmark.nb201 import BenchmarkError
    from isdarts.config import ConfigError
    from isdarts.data.cifar import DataError
    from isdarts.report.tables import ReportError
    from isdarts.spaces.nb201_genotype import GenotypeError
    from isdarts.train.checkpoint import CheckpointError
    from isdarts.train.runtime import NonFiniteLossError

    try:
        action()
    except (ConfigError, DataError, BenchmarkError, GenotypeError, ReportError, FileNotFoundError) as exc:
        print(f"isdarts: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CheckpointError, NonFiniteLossError, ValueError) as exc:
        print(f"isdarts: error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print("isdarts: interrupted; the last completed epoch's checkpoint is kept", file=sys.stderr)
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isdarts",
        description="IS-DARTS and its DARTS-family peers: search, benchmark lookups and the paper's tables. "
        "`dvc repro` runs the same steps as a pipeline.",
    )
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("prepare-data", help="locate or download CIFAR-10, verify it and store it for the search")

    search = sub.add_parser("search", help="run (or resume) one NB201 search for one seed")
    search.add_argument("--seed", type=int, required=True)
    search.add_argument("--stage", default=None, help="DVC stage name, recorded as an MLflow tag")
    search.add_argument("--out", type=Path, default=None, help="output folder (default runs/nb201/<method>/seed_N)")
    search.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder")
    search.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")

    lookup = sub.add_parser("lookup", help="NB201 200-epoch accuracies of an architecture string or genotype JSON")
    lookup.add_argument("arch", help="NB201 string like '|nor_conv_3x3~0|+|...|' or a genotype.json path")

    sub.add_parser("collect", help="look up every seed's searched cell and write results/nb201_<method>.json")
    sub.add_parser("report", help="rebuild reports/table1.md and .csv from results/")
    return parser


def _lookup(arch: str) -> None:
    from isdarts.benchmark.nb201 import ACCURACY_LABELS, default_table
    from isdarts.spaces.nb201_genotype import Nb201Genotype

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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup()
    from isdarts import workflows
    from isdarts.config import ConfigError, load_params

    if args.command == "lookup":
        return run_guarded(lambda: _lookup(args.arch))

    def action() -> None:
        params = load_params(args.params)
        if args.command == "prepare-data":
            manifest = workflows.prepare_data(params)
            print(f"prepared {manifest['kind']} CIFAR-10: {manifest['counts']}")
        elif args.command == "search":
            if args.seed < 0:
                raise ConfigError(f"--seed {args.seed}: expected a non-negative integer")
            metrics = workflows.search_nb201(
                params, args.seed, out_dir=args.out, checkpoint_dir=args.checkpoints, stage=args.stage,
                progress=not args.no_progress,
            )
            print(f"seed {args.seed}: {metrics['arch_str']}")
        elif args.command == "collect":
            result = workflows.lookup_nb201(params, params.nb201_search.method)
            print(json.dumps(result["summary"], indent=2))
        elif args.command == "report":
            for path in workflows.build_report():
                print(f"wrote {path}")

    return run_guarded(action)


if __name__ == "__main__":
    sys.exit(main())
