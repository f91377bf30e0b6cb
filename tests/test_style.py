"""The house style (../shared/design/HOUSE.md): the code, scripts and tests are ruff clean under pyproject's rules."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    checked = ["isdarts", "stages", "scripts", "tests"]
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *checked], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
