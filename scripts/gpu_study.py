"""The collapse study at the paper's supernet size on a GPU: DARTS (1st order) and IS-DARTS, one seed.

NB201 supernet C=16, N=5, 32x32 images, batch 64, the paper's optimiser settings (profiles/paper.yaml), and
the paper's number of steps: DARTS gets 50 epochs x 390 = 19,500 α steps and IS-DARTS its 30 epochs with
shrinking after 22, 24, 26 and 28 on the full CIFAR-10. On the 5,551-image subset (the full CIFAR-10 is not
on the device machine unless carried) the epochs are stretched to the same step counts: DARTS 443 epochs of
44 α steps, IS-DARTS as many weight steps with its shrinking at the end, like profiles/study.yaml. Every
epoch records the argmax cell (its NB201 benchmark accuracy) as any search does.

On the device machine (no mlflow, dvc or network; torch, numpy, pyyaml, scipy, matplotlib), from the
repository root, after `mkdir -p .gpu_data && cp -r ../shared/data/cifar10-subset/cifar-10-batches-py
.gpu_data/` here, with carry [".gpu_data"] and timeout_s 600:

    PYTHONPATH=. python scripts/gpu_study.py --data .gpu_data --out "$OUT" --budget-s 540

DARTS runs first, then IS-DARTS, each within its share of --budget-s; a search the budget cuts short keeps
the epochs it finished in partial_history.json. Finished searches are written as run_study.py writes them
($OUT/nb201/<method>/seed_0/{history,metrics,genotype}.json): copy $OUT/nb201 to runs/study_gpu/nb201 and
`dvc repro report` puts them on the study page, labelled with the GPU and data. summary.md says what ran.
CI runs it at tiny size on CPU (tests/test_gpu_study.py).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # also works without PYTHONPATH=.

from isdarts.config import params_from_dict  # noqa: E402
from isdarts.config.search import SearchConfig  # noqa: E402
from isdarts.data.cifar import load_cifar10, locate_cifar10  # noqa: E402
from isdarts.io import atomic_write_json  # noqa: E402
from isdarts.search.loop import SearchRun, run_search  # noqa: E402
from isdarts.train.runtime import describe_device, resolve_device  # noqa: E402

PAPER_ALPHA_STEPS = 50 * 390  # DARTS on NB201 in the paper (AutoDL's 25k/25k split, batch 64)
PAPER_SIZE = {"C": 16, "N": 5, "batch_size": 64, "image_size": 32}
TINY_SIZE = {"C": 4, "N": 1, "batch_size": 16, "image_size": 8, "train_images": 96, "test_images": 32}
TINY_STEPS = 24
SHARE = {"darts1": 0.6, "isdarts": 0.4}  # of the budget; DARTS's bi-level steps cost about twice IS-DARTS's


class OutOfBudget(Exception):
    """Raised from the epoch hook once a search's share of the budget is spent."""


def study_cfg(method: str, n_train: int, size: dict[str, int], steps: int, full: bool) -> SearchConfig:
    """The paper profile's search of `method` at `size`, stretched to `steps` steps on `n_train` images
    (kept as the paper's 30 IS-DARTS epochs on the full CIFAR-10)."""
    raw = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    raw["profile"] = "custom"
    raw["nb201"]["search"].update(size)
    n_train = min(n_train, size.get("train_images", n_train))
    batch = size["batch_size"]
    if method == "darts1":
        per_epoch = math.ceil(n_train * raw["nb201"]["options"]["darts1"]["train_portion"] / batch)
        raw["nb201"]["options"]["darts1"]["epochs"] = math.ceil(steps / per_epoch)
    elif not full:
        epochs = math.ceil(steps / math.ceil(n_train / batch))
        options = raw["nb201"]["options"]["isdarts"]
        options["epochs"] = max(epochs, 9)
        options["shrink"] = {"steps": 4, "interval": 2}  # the paper's interval, at the end
        options["iim"]["every_epoch"] = True
    if method == "isdarts":
        raw["nb201"]["options"]["isdarts"]["iim"]["every_epoch"] = True  # the argmax cell at every epoch
    return params_from_dict(raw).nb201.search(method)


def run_one(cfg: SearchConfig, arrays: Any, device: str, data_kind: str, out: Path, seconds: float) -> dict[str, Any]:
    """One search within `seconds`; its outputs (or, cut short, the epochs done) under `out`."""
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds

    def on_epoch(record: dict[str, Any]) -> None:
        records.append(record)
        if time.monotonic() > deadline and len(records) < cfg.epochs:
            raise OutOfBudget

    began = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as ckpt:
        try:
            run = SearchRun(cfg, 0, profile="study", device=device, data_kind=data_kind,
                            data_fingerprint=f"gpu-study-{data_kind}", checkpoint_dir=Path(ckpt))
            result = run_search(run, arrays, progress=False, on_epoch=on_epoch)
        except OutOfBudget:
            atomic_write_json(out / "partial_history.json", {"epochs": records, "planned_epochs": cfg.epochs})
            return {"finished": False, "epochs": len(records), "planned_epochs": cfg.epochs,
                    "seconds": time.monotonic() - began, "last": _last(records)}
    for name in ("history", "metrics", "genotype"):
        atomic_write_json(out / f"{name}.json", result[name])
    return {"finished": True, "epochs": cfg.epochs, "planned_epochs": cfg.epochs,
            "seconds": time.monotonic() - began, "last": _last(records)}


def _last(records: list[dict[str, Any]]) -> dict[str, Any]:
    if not records:
        return {}
    r = records[-1]
    cell = r.get("cell") or {}
    return {"epoch": r["epoch"], "weight_steps": r["weight_steps"], "alpha_steps": r["alpha_steps"],
            "genotype": r["genotype"], "param_free": cell.get("param_free"),
            "cifar10_test": (cell.get("benchmark") or {}).get("cifar10_test")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="cifar-10-batches-py or the folder holding it")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget-s", type=float, default=540.0)
    parser.add_argument("--cpu-tiny", action="store_true", help="tiny sizes on CPU (CI)")
    args = parser.parse_args(argv)
    device = resolve_device("cpu" if args.cpu_tiny else args.device)
    source = locate_cifar10(args.data, download=False, subset_fallback=args.data)
    arrays = load_cifar10(source)
    full = source.kind == "full"
    size, steps = (TINY_SIZE, TINY_STEPS) if args.cpu_tiny else (PAPER_SIZE, PAPER_ALPHA_STEPS)
    data = (f"CIFAR-10 {source.kind} ({len(arrays.train_y):,} train / {len(arrays.test_y):,} test images)"
            + ("" if full else ", not the paper's data: epochs stretched to the paper's steps"))
    lines = ["# Collapse study on the GPU", "", f"- device: {describe_device(device)}", f"- data: {data}",
             f"- supernet: {size}", ""]
    results = {}
    for method, share in SHARE.items():
        cfg = study_cfg(method, len(arrays.train_y), size, steps, full)
        results[method] = run_one(cfg, arrays, str(device), source.kind, args.out / "nb201" / method / "seed_0",
                                  share * args.budget_s)
        r = results[method]
        last = r["last"]
        lines.append(f"- {method}: {'finished' if r['finished'] else 'cut short by the budget'} after "
                     f"{r['epochs']}/{r['planned_epochs']} epochs in {r['seconds'] / 60:.1f} min; "
                     f"{last.get('alpha_steps')} α / {last.get('weight_steps')} weight steps; argmax cell "
                     f"`{last.get('genotype')}`, {last.get('param_free')}/6 parameter-free edges, NB201 C10 test "
                     f"{last.get('cifar10_test')}")
        atomic_write_json(args.out / "results.json", {"device": describe_device(device), "data": data, **results})
        (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
