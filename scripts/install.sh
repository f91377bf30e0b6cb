#!/usr/bin/env bash
# Create .venv and install isdarts with its pinned-range dependencies (torch + torchvision from PyPI:
# the CUDA build, which also runs on CPU). Safe to re-run: an existing .venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
# DVC and MLflow phone home unless told not to; our scripts also set these.
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
if [ ! -d .dvc ]; then .venv/bin/dvc init --quiet; fi
.venv/bin/dvc config core.analytics false
.venv/bin/python -c "import torch, torchvision, dvc, mlflow, isdarts; print('isdarts ready: torch', torch.__version__, '| cuda available:', torch.cuda.is_available())"
