"""The inference loop: newest frame -> preprocess -> invoke -> postprocess -> outputs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..outputs.base import Output, OutputClosed
from ..service.guard import GuardConfig
from ..sources.base import Source
from ..values import Classification, Frame
from .capture import FrameHandoff, Item, start_capture
from .stats import RunStats

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often a waiting loop looks at the stop event
CAPTURE_JOIN_SECONDS = 1.0


@dataclass(frozen=True)
class RunConfig:
    # newest: drop frames inference had no time for (live video); all: every frame (files).
    # auto: newest for cameras and streams, all for image and video files.
    frames: Literal["auto", "newest", "all"] = "auto"
    max_frames: int = field(default=0, metadata={"min": 0})  # 0: until the source ends or a signal
    guard: GuardConfig = GuardConfig()  # the thermal guard: cheaper models while the board is hot


class Stages(Protocol[Item]):
    """Classifying a frame in two halves (FrameClassifier): `prepare` on the capture thread, `classify` here."""

    def prepare(self, frame: Frame) -> Item: ...

    def classify(self, prepared: Item) -> Classification | None: ...  # None: the frame is passed over


def publish(result: Classification, outputs: list[Output], stats: RunStats) -> None:
    """Send to every output; one failing never stops the others or the pipeline."""
    for output in list(outputs):
        try:
            output.publish(result)
        except OutputClosed as exc:
            log.warning("output %s closed: %s", output.name, exc)
            outputs.remove(output)
        except Exception as exc:  # an output's own failure is logged and counted, never fatal
            stats.output_errors += 1
            if stats.output_errors == 1 or stats.output_errors % 1000 == 0:
                log.warning("output %s failed (%d so far): %s", output.name, stats.output_errors, exc)


def run_pipeline(source: Source, stages: Stages[Item], outputs: Sequence[Output],
                 stop: threading.Event, *, every_frame: bool, max_frames: int = 0,
                 stats: RunStats | None = None, reader_done: threading.Event | None = None,
                 on_idle: Callable[[], None] | None = None) -> RunStats:
    """Classify frames from `source` until it ends, `max_frames` are done, or `stop` is set.

    The source belongs to the caller, who closes it, but only once `reader_done` is set: a capture
    thread still blocked in a driver's read after the loop ends is left to process exit, since
    closing a device under a read can crash the driver.
    `on_idle` is called on every poll that brings no frame (a source reconnecting, a slow camera).
    Raises the source's error (SourceError) after publishing every frame that came before it.
    """
    handoff: FrameHandoff[Item] = FrameHandoff(capacity=2 if every_frame else 1, drop_oldest=not every_frame,
                                               stop=stop)
    capture = start_capture(source, stages.prepare, handoff, stop)
    stats = stats or RunStats()
    live_outputs = list(outputs)
    try:
        while not stop.is_set() and live_outputs:
            frame = handoff.get(POLL_SECONDS)
            if frame is None:
                if handoff.exhausted:
                    break
                if on_idle is not None:
                    on_idle()
                continue
            result = stages.classify(frame)
            if result is None:
                continue
            stats.record(result.timing.inference_ms, handoff.dropped, result.timing.age_ms)
            publish(result, live_outputs, stats)
            if max_frames and stats.frames >= max_frames:
                break
    finally:
        stop.set()
        capture.join(CAPTURE_JOIN_SECONDS)
        stats.dropped = handoff.dropped
        if reader_done is not None and not capture.is_alive():
            reader_done.set()
    if handoff.error is not None:
        raise handoff.error
    return stats
