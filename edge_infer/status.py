"""The run's status as frozen values: what the MQTT stats, `/api/status`, `/metrics` and the final log report.

The run assembly builds a `RunStatus` on request (`Run.status()`), from any thread; outputs read the
model and backend in use from it (the thermal guard and the Edge TPU failover change them), never from
what they were opened with. `to_json_dict` is the one JSON form (the MQTT stats message, `/api/status`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Percentiles:
    p50: float = 0.0
    p95: float = 0.0

    def to_json_dict(self) -> dict[str, float]:
        return {"p50": round(self.p50, 3), "p95": round(self.p95, 3)}


@dataclass(frozen=True)
class FrameCounts:
    """What the inference loop counted (RunStats): for the run, or for one camera."""

    frames: int = 0
    dropped_frames: int = 0
    output_errors: int = 0
    uptime_s: float = 0.0
    fps: float = 0.0
    inference_ms: Percentiles = Percentiles()
    age_ms: Percentiles = Percentiles()  # capture to result: how far results lag behind reality

    def to_json_dict(self) -> dict[str, object]:
        return {"frames": self.frames, "dropped_frames": self.dropped_frames, "output_errors": self.output_errors,
                "uptime_s": round(self.uptime_s, 1), "fps": round(self.fps, 2),
                "inference_ms": self.inference_ms.to_json_dict(), "age_ms": self.age_ms.to_json_dict()}


@dataclass(frozen=True)
class SourceHealth:
    """A live source that reconnects (ReconnectingSource)."""

    state: str  # "streaming" or "reconnecting"
    outages: int  # how many times the source was lost
    outage_s: float  # seconds without the source, in all, the current outage included
    since_s: float  # seconds in the current state

    @property
    def streaming(self) -> bool:
        return self.state == "streaming"

    def to_json_dict(self) -> dict[str, object]:
        return {"state": self.state, "outages": self.outages, "outage_s": round(self.outage_s, 1),
                "since_s": round(self.since_s, 1)}


@dataclass(frozen=True)
class AcceleratorHealth:
    """The Edge TPU failover (Failover)."""

    state: str  # "edgetpu", or "lost" while the fallback runs on the CPU
    failovers: int  # how many times the Edge TPU was lost (a start-up on the fallback counts)
    lost_s: float  # seconds on the fallback, in all, the current spell included

    def to_json_dict(self) -> dict[str, object]:
        return {"state": self.state, "failovers": self.failovers, "lost_s": round(self.lost_s, 1)}


@dataclass(frozen=True)
class GuardStatus:
    """The thermal guard's last step."""

    level: int = 0
    model: str = ""
    temperature_c: float | None = None

    def to_json_dict(self) -> dict[str, object]:
        return {"level": self.level, "model": self.model, "temperature_c": self.temperature_c}


@dataclass(frozen=True)
class BoardHealth:
    """What the board reports, where it does: the SoC temperature and the Pi firmware's throttling flags."""

    cpu_temp_c: float | None = None
    throttled: Mapping[str, bool] | None = None

    def to_json_dict(self) -> dict[str, object]:
        health: dict[str, object] = {}
        if self.cpu_temp_c is not None:
            health["cpu_temp_c"] = round(self.cpu_temp_c, 1)
        if self.throttled is not None:
            health["throttled"] = dict(self.throttled)
        return health


@dataclass(frozen=True)
class RegionStatus:
    model: str
    backend: str


@dataclass(frozen=True)
class CameraStatus:
    """One camera of a `cameras:` run."""

    name: str
    frames: FrameCounts
    source: SourceHealth | None = None  # None: a file source, which does not reconnect
    regions: Mapping[str, RegionStatus] = field(default_factory=dict)

    @property
    def streaming(self) -> bool:
        return self.source is None or self.source.streaming

    def to_json_dict(self) -> dict[str, object]:
        counts = self.frames.to_json_dict()
        del counts["uptime_s"], counts["output_errors"]  # the run's, not a camera's
        if self.source is not None:
            counts["source"] = self.source.to_json_dict()
        counts["regions"] = {name: {"model": region.model, "backend": region.backend}
                             for name, region in self.regions.items()}
        return counts


@dataclass(frozen=True)
class RunStatus:
    model: str  # the configured model's, as it runs now (a guard step or the fallback changes it)
    backend: str
    frames: FrameCounts = FrameCounts()
    source: SourceHealth | None = None  # a plain `source:` run's, when it reconnects
    accelerator: AcceleratorHealth | None = None
    guard: GuardStatus | None = None
    board: BoardHealth = BoardHealth()
    cameras: tuple[CameraStatus, ...] = ()  # a `cameras:` run's

    def camera(self, name: str) -> CameraStatus | None:
        return next((camera for camera in self.cameras if camera.name == name), None)

    def to_json_dict(self) -> dict[str, object]:
        """The MQTT stats message and `/api/status`'s `stats`."""
        record: dict[str, object] = {**self.frames.to_json_dict(), "model": self.model, "backend": self.backend}
        if self.source is not None:
            record["source"] = self.source.to_json_dict()
        if self.cameras:
            record["cameras"] = {camera.name: camera.to_json_dict() for camera in self.cameras}
        if self.accelerator is not None:
            record["accelerator"] = self.accelerator.to_json_dict()
        if self.guard is not None:
            record["guard"] = self.guard.to_json_dict()
        return {**record, **self.board.to_json_dict()}
