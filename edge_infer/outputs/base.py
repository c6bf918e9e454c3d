"""What every output provides."""

from __future__ import annotations

from typing import Protocol

from ..values import Classification


class OutputClosed(Exception):
    """The output's consumer is gone for good (e.g. the reader of stdout exited); stop publishing to it."""


class Output(Protocol):
    name: str

    def publish(self, result: Classification) -> None: ...

    def close(self) -> None: ...
