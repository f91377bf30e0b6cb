"""Real services for the tests that need them (SLURM, PostgreSQL, Chromium), installed from Debian's archive.

CI runs as root on a Debian machine that reaches the package archive, so there a missing service is installed
(`apt-get install`) and the tests run; elsewhere (not root, no apt-get, no archive) they skip with the reason
and the command that would install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

APT_TIMEOUT_S = 900
# One apt-get at a time in this process: dpkg holds a lock, and `apt-get update` need run only once.
_apt_lock = threading.Lock()
_apt_updated = False


def apt_install(packages: list[str]) -> str | None:
    """Install Debian `packages`; None on success, else why it could not be done (for a skip message)."""
    global _apt_updated
    if os.geteuid() != 0:
        return f"not root, so `apt-get install {' '.join(packages)}` cannot run here"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine (not Debian)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _apt_lock:
        steps = [] if _apt_updated else [["apt-get", "update", "-q"]]
        steps.append(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages])
        for step in steps:
            try:
                done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                return f"`{' '.join(step)}` ran past {APT_TIMEOUT_S} s (is the package archive reachable?)"
            if done.returncode != 0:
                return f"`{' '.join(step)}` failed: {done.stderr.strip()[-400:]}"
            if step[1] == "update":
                _apt_updated = True
    return None


def require_commands(commands: list[str], packages: list[str]) -> None:
    """Skip the calling test unless every one of `commands` is on PATH, installing `packages` first if not."""
    if all(shutil.which(c) for c in commands):
        return
    why = apt_install(packages)
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing and could not be installed: {why or 'not on PATH after install'}"
                    f"; install with `apt-get install {' '.join(packages)}`")


def chromium() -> str:
    """The path of a Chromium binary, installing Debian's `chromium` if none is found; skips where impossible."""
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    if not any(shutil.which(n) for n in names):
        why = apt_install(["chromium"])
        if not any(shutil.which(n) for n in names):
            pytest.skip(f"no Chromium and it could not be installed ({why}); `apt-get install chromium`")
    return next(shutil.which(n) for n in names if shutil.which(n))
