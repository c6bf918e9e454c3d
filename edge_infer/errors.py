"""One root exception; every failure a user can cause is a subclass with its own exit status.

Third-party errors (LiteRT, OpenCV, YAML, OS) are translated where they cross into our code,
so the CLI prints one line and exits with the status of the class, never a traceback.
"""

from __future__ import annotations


class EdgeInferError(Exception):
    """Root of every error edge-infer raises on purpose."""

    exit_status = 1


class ConfigError(EdgeInferError):
    """The configuration or the command line is wrong; nothing has started."""

    exit_status = 2


class ModelError(EdgeInferError):
    """The model file is missing, corrupt, not an image classifier, or needs other hardware."""

    exit_status = 3


class SourceError(EdgeInferError):
    """The frame source cannot be opened, or failed while running."""

    exit_status = 4


class RuntimeUnavailableError(EdgeInferError):
    """No interpreter, an accelerator that cannot be used, or an inference that failed."""

    exit_status = 5


class WorkerDown(RuntimeUnavailableError):
    """The inference worker process is gone (it died, or waits to be started again): this frame has no result."""


# The statuses that are not an error class's own (all are listed in the README).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_SOURCE = SourceError.exit_status
