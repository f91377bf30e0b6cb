"""Every error isdarts raises on purpose, in one leaf module that imports nothing of ours.

Each carries a message that names the problem and its fix; the CLI turns them into a one-line error and
a non-zero exit. Keeping them here lets any module raise them without importing the module that owns
the concept (which is what used to tie config, spaces and train into an import cycle).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A params value of the wrong type or out of range."""


class DataError(RuntimeError):
    """A dataset is missing, corrupt or not what it claims to be; the message says how to fix it."""


class GenotypeError(ValueError):
    """A genotype (string, indices or JSON) that is not a valid cell of its space."""


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used; never silently discarded."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the last good checkpoint is kept."""


class BenchmarkError(RuntimeError):
    """The benchmark table (or the official benchmark file) is missing, corrupt or cannot answer."""


class ReportError(ValueError):
    """A stage output the report cannot use; the message names the file and the offending key."""


class OutputWriteError(OSError):
    """An output or checkpoint could not be written (disk full, I/O error); the previous version is intact."""


class Preempted(KeyboardInterrupt):
    """A stop request (SIGTERM, SIGINT) honoured inside an epoch: a checkpoint was written there.

    A KeyboardInterrupt, so everything that closes up after Ctrl-C (the MLflow run ends KILLED) does so here.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
