"""What every output provides, and what it is told about the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..values import Classification, Frame


class OutputClosed(Exception):
    """The output's consumer is gone for good (e.g. the reader of stdout exited); stop publishing to it."""


class Output(Protocol):
    name: str

    def publish(self, result: Classification) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class FrameWatcher(Protocol):
    """An output that also wants the pictures (a live view): `see_frame` is called on the capture thread
    with every frame, before its buffer goes back to the source's pool. It must return at once: copy
    what it needs (only while somebody watches, at its own rate), never encode or wait there."""

    def see_frame(self, frame: Frame) -> None: ...


@dataclass(frozen=True)
class OutputContext:
    model: str
    backend: str
    stats: Callable[[], dict[str, object]]  # a snapshot of the run's statistics, from any thread
