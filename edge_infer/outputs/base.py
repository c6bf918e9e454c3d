"""What every output provides, and what it is told about the run."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from ..values import Box, Classification, Frame, RunStatus

if TYPE_CHECKING:
    from ..teach.desk import TeachDesk


class OutputClosed(Exception):
    """The output's consumer is gone for good (e.g. the reader of stdout exited); stop publishing to it."""


class Output(Protocol):
    name: str

    def publish(self, result: Classification) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class FrameWatcher(Protocol):
    """An output that also wants the pictures (a live view): `see_frame` is called on the capture thread
    with every frame, before its buffer goes back to the source's pool, with the frame's camera (None:
    the plain `source:` run). It must return at once: copy what it needs (only while somebody watches,
    at its own rate), never encode or wait there."""

    def see_frame(self, frame: Frame, camera: str | None = None) -> None: ...


def frame_watchers(outputs: Sequence[Output]) -> list[FrameWatcher]:
    """The outputs that also want the pictures."""
    return [output for output in outputs if isinstance(output, FrameWatcher)]


@runtime_checkable
class BrokerLink(Protocol):
    """An output that keeps a connection to a broker (MQTT): the live view shows whether it is up."""

    @property
    def connected(self) -> bool: ...


@runtime_checkable
class SnapshotPublisher(Protocol):
    """An output that carries snapshots further (MQTT's retained snapshot topics)."""

    def publish_snapshot(self, jpeg: bytes, camera: str | None = None, region: str | None = None) -> None: ...


T = TypeVar("T")


class Peers:
    """The run's outputs, as the run assembly opens them: an output that uses another (the snapshots publish
    on MQTT, the live view shows whether MQTT is connected) finds it here when it needs it, by what it can
    do, so outputs may be listed, and so opened, in any order and no output module imports another."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names = tuple(names)  # every output listed in the configuration, opened or not yet
        self.opened: list[Output] = []

    def find(self, kind: type[T]) -> T | None:
        return next((output for output in self.opened if isinstance(output, kind)), None)  # type: ignore[misc]


@dataclass(frozen=True)
class CameraLayout:
    """A camera of a `cameras:` run as the outputs see it: its name and its regions' boxes (none: the whole frame)."""

    name: str
    regions: Mapping[str, Box] = field(default_factory=dict)

    @property
    def places(self) -> tuple[str | None, ...]:
        """Where its results come from: each region, or the whole frame (None)."""
        return tuple(self.regions) or (None,)


@dataclass(frozen=True)
class OutputContext:
    status: Callable[[], RunStatus]  # the run's status now (the model and backend in use among it), from any thread
    cameras: tuple[CameraLayout, ...] = ()  # a `cameras:` run's cameras; () for a plain `source:` run
    # Whether a camera delivers frames now (False while it reconnects), from any thread.
    streaming: Callable[[str], bool] = lambda camera: True
    teach: TeachDesk | None = None  # the live page's Teach panel (a service run with the web output)
