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
# uv installs the same wheels from the same registry faster than pip (about 70 s against 2.5 min measured
# in a fresh clone, BENCHMARKS.md "Install and CI"); it is given pip's own constraints so both resolve alike.
# --compile-bytecode: pip writes .pyc files at install and uv does not by default; without them every dvc and
# mlflow subprocess (pipeline stages, tests) compiled those packages again (the suite ran about 1.8x slower).
# ISDARTS_INSTALLER=pip installs with pip alone, which is also the fallback when uv cannot be had or fails.
install_with_uv() {
  .venv/bin/python -m pip install --quiet uv || return 1
  local constraint args=()
  constraint=${PIP_CONSTRAINT:-$(.venv/bin/python -m pip config list 2>/dev/null |
    sed -n "s/^global\.constraint='\(.*\)'$/\1/p")}
  for file in $constraint; do args+=(--constraint "$file"); done
  .venv/bin/python -m uv pip install --quiet --compile-bytecode --python .venv/bin/python "${args[@]}" -e '.[dev]'
}
if [ "${ISDARTS_INSTALLER:-uv}" != uv ] || ! install_with_uv; then
  .venv/bin/python -m pip install --quiet -e '.[dev]'
fi
# DVC and MLflow phone home unless told not to; our scripts also set these.
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
if [ ! -d .dvc ]; then .venv/bin/dvc init --quiet; fi
.venv/bin/dvc config core.analytics false
.venv/bin/python -c "import torch, torchvision, dvc, mlflow, isdarts; print('isdarts ready: torch', torch.__version__, '| cuda available:', torch.cuda.is_available())"
