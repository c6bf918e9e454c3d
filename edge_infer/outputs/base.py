"""What every output provides, and what it is told about the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..values import Classification


class OutputClosed(Exception):
    """The output's consumer is gone for good (e.g. the reader of stdout exited); stop publishing to it."""


class Output(Protocol):
    name: str

    def publish(self, result: Classification) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class OutputContext:
    model: str
    backend: str
    stats: Callable[[], dict[str, object]]  # a snapshot of the run's statistics, from any thread
