"""A search checkpoint is keyed on the code that decides its numbers, and on nothing else.

Each case copies the package, starts a tiny search in a subprocess that imports the copy, edits one
module of the copy, and runs again: an edit of the ImageNet validation or of the paper table must resume
the search (on the paper profile a restart costs GPU-days), an edit of the IIM must restart it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest.mock import ANY

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import json, logging, sys
from pathlib import Path
import yaml
import isdarts
from isdarts.config import params_from_dict
from isdarts.data.cifar import load_cifar10, locate_cifar10
from isdarts.search.loop import SearchRun, run_search

cifar, ckpt, profile = map(Path, sys.argv[1:4])
stop_after = int(sys.argv[4])
resumed = []
class Resumed(logging.Handler):
    def emit(self, record):
        resumed.append(record.getMessage().startswith("resuming"))
epochs_log = logging.getLogger("isdarts.train.epochs")
epochs_log.setLevel(logging.INFO)
epochs_log.addHandler(Resumed())
raw = yaml.safe_load(profile.read_text())
raw["profile"], raw["device"] = "smoke", "cpu"
raw["nb201"]["search"].update({"C": 4, "N": 1, "epochs": 3, "batch_size": 32})
raw["nb201"]["methods"], raw["nb201"]["options"] = ["isdarts"], {"isdarts": raw["nb201"]["options"]["isdarts"]}
raw["nb201"]["options"]["isdarts"]["shrink"] = {"steps": 2, "interval": 1}
raw["nb201"]["options"]["isdarts"]["iim"].update(n_samples=32, batch_size=32)
cfg = params_from_dict(raw).nb201.search("isdarts")
data = load_cifar10(locate_cifar10(cifar, download=False, subset_fallback=cifar))
data.train_x, data.train_y = data.train_x[:64], data.train_y[:64]
run = SearchRun(cfg, 0, profile="smoke", device="cpu", data_kind="subset", data_fingerprint="tiny", checkpoint_dir=ckpt)
out = run_search(run, data, progress=False, stop_after_epochs=stop_after)
print(json.dumps({"epochs_done": out.get("epochs_done"), "resumed": any(resumed), "package": isdarts.__file__}))
"""


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer contains {old!r}; update this test's edit"
    path.write_text(text.replace(old, new, 1))


EDITS = {
    # (module, old, new, resumes)
    "imagenet validation": ("config/train.py", "label_smoothing must be in [0, 1)", "label_smoothing: [0, 1)", True),
    "paper table": ("registry.py", '"batch_size": 64, "lr": 0.025', '"batch_size": 64, "lr": 0.0251', True),
    "the report": ("report/__init__.py", '"""', '"""Edited. ', True),
    "the iim": ("search/iim.py", "\nimport torch\n", "\nimport torch\n\nEDITED = True\n", False),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_search_checkpoint_survives_edits_that_do_not_decide_its_numbers(case, tmp_path, tiny_cifar_dir):
    module, old, new, resumes = EDITS[case]
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "isdarts", copy / "isdarts", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", RUN, str(tiny_cifar_dir), str(tmp_path / "ckpt"), str(ROOT / "profiles/quick.yaml")]

    def run(stop_after: int) -> dict:
        done = subprocess.run([*args, str(stop_after)], env=env, capture_output=True, text=True, timeout=600,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert Path(result["package"]).is_relative_to(copy), "the subprocess must import the edited copy"
        return result

    assert run(1) == {"epochs_done": 1, "resumed": False, "package": ANY}
    edit(copy / "isdarts" / module, old, new)
    # A resumed search continues from epoch 1's checkpoint, a restarted one trains from scratch; the epoch
    # loop logs "resuming ..." only when it loads a checkpoint.
    assert run(2) == {"epochs_done": 2, "resumed": resumes, "package": ANY}
