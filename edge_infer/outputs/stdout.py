"""One JSON object per line on stdout (logs go to stderr, so stdout stays machine-readable)."""

from __future__ import annotations

import contextlib
import sys
from typing import TextIO

from ..values import Classification
from .base import OutputClosed, OutputContext, Peers


class StdoutOutput:
    name = "stdout"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def publish(self, result: Classification) -> None:
        try:
            self._stream.write(result.to_json() + "\n")
            self._stream.flush()  # a reader on a pipe sees each result when it happens
        except BrokenPipeError as exc:
            raise OutputClosed("stdout was closed by its reader") from exc

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):  # reader gone, or stream already closed
            self._stream.flush()


def open_stdout(_section: None, _context: OutputContext, _peers: Peers) -> StdoutOutput:
    return StdoutOutput()
