"""The inference loop: newest frame -> preprocess -> invoke -> postprocess -> outputs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol

from ..outputs.base import Output, OutputClosed
from ..sources.base import Source
from ..values import Classification, Frame
from .capture import FrameHandoff, Item, start_capture
from .stats import RunStats

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often a waiting loop looks at the stop event
CAPTURE_JOIN_SECONDS = 1.0


class Stages(Protocol[Item]):
    """Classifying a frame in two halves (FrameClassifier): `prepare` on the capture thread, `classify` here."""

    def prepare(self, frame: Frame) -> Item: ...

    def classify(self, prepared: Item) -> Classification | None: ...  # None: the frame is passed over


class FeedStages(Protocol[Item]):
    """A feed's stages (CameraStages): any number of results per frame, one per region."""

    def prepare(self, frame: Frame) -> Item: ...

    def classify(self, prepared: Item) -> Sequence[Classification]: ...


@dataclass
class Feed(Generic[Item]):
    """One camera (or file source) feeding the loop: its source, its stages, and what the loop keeps of it.

    The source belongs to the caller. `every_frame`: classify every frame (files) or only the newest (live).
    """

    source: Source
    stages: FeedStages[Item]
    every_frame: bool
    name: str | None = None
    stats: RunStats | None = None  # this camera's own, beside the run's
    handoff: FrameHandoff[Item] | None = field(default=None, init=False)
    capture: threading.Thread | None = field(default=None, init=False)


class OneResult(Generic[Item]):
    """Single-result stages (a bare FrameClassifier, the tests' stand-ins) as a feed's: `run_pipeline`."""

    def __init__(self, stages: Stages[Item]) -> None:
        self._stages = stages

    def prepare(self, frame: Frame) -> Item:
        return self._stages.prepare(frame)

    def classify(self, prepared: Item) -> tuple[Classification, ...]:
        result = self._stages.classify(prepared)
        return () if result is None else (result,)


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
    """Classify frames from one `source` with single-result `stages`: `run_feeds` with one feed."""
    return run_feeds([Feed(source, OneResult(stages), every_frame)], outputs, stop, max_frames=max_frames,
                     stats=stats, reader_done=reader_done, on_idle=on_idle)


def run_feeds(feeds: Sequence[Feed[Any]], outputs: Sequence[Output], stop: threading.Event, *,
              max_frames: int = 0, stats: RunStats | None = None, reader_done: threading.Event | None = None,
              on_idle: Callable[[], None] | None = None) -> RunStats:
    """Classify frames from every feed until all have ended, `max_frames` are done, or `stop` is set.

    One capture thread per feed, each with its own bounded hand-off (the newest frame for a live
    source, every frame for a file). The loop serves the feeds in turns, one frame each per turn, so
    a 30 fps camera cannot starve a 5 fps one, and a feed with nothing waiting costs nothing.
    Sources belong to the caller, who closes them, but only once `reader_done` is set: a capture
    thread still blocked in a driver's read after the loop ends is left to process exit, since
    closing a device under a read can crash the driver.
    `on_idle` is called on every poll that brings no frame (a source reconnecting, a slow camera).
    Raises the first feed's error (SourceError) once every other feed is done, after publishing every
    frame that came before it.
    """
    stats = stats or RunStats()
    ready = threading.Condition()
    for feed in feeds:
        feed.handoff = FrameHandoff(capacity=2 if feed.every_frame else 1, drop_oldest=not feed.every_frame,
                                    stop=stop, cond=ready)
        feed.capture = start_capture(feed.source, feed.stages.prepare, feed.handoff, stop,
                                     name=f"capture-{feed.name}" if feed.name else "capture")
    handoffs = [feed.handoff for feed in feeds if feed.handoff is not None]
    live_outputs = list(outputs)
    reported: set[int] = set()
    try:
        while not stop.is_set() and live_outputs and not (max_frames and stats.frames >= max_frames):
            served = False
            for number, feed in enumerate(feeds):
                assert feed.handoff is not None
                item = feed.handoff.take()
                if item is None:
                    if feed.handoff.error is not None and number not in reported and len(feeds) > 1:
                        reported.add(number)  # the others go on; the error is raised when they are done
                        log.error("camera %s: %s", feed.name, feed.handoff.error)
                    continue
                served = True
                results = feed.stages.classify(item)
                if results:
                    record(results, feed, stats, handoffs)
                    for result in results:
                        publish(result, live_outputs, stats)
                if max_frames and stats.frames >= max_frames:
                    break
            if served:
                continue
            if all(handoff.exhausted for handoff in handoffs):
                break
            with ready:  # under the hand-offs' lock: a frame put after the check wakes this wait
                if not any(handoff.ready for handoff in handoffs):
                    ready.wait(POLL_SECONDS)
            if on_idle is not None and not any(handoff.ready for handoff in handoffs):
                on_idle()
    finally:
        stop.set()
        for feed in feeds:
            assert feed.capture is not None
            feed.capture.join(CAPTURE_JOIN_SECONDS)
        stats.dropped = sum(handoff.dropped for handoff in handoffs)
        if reader_done is not None and not any(feed.capture is not None and feed.capture.is_alive()
                                               for feed in feeds):
            reader_done.set()
    error = next((handoff.error for handoff in handoffs if handoff.error is not None), None)
    if error is not None:
        raise error
    return stats


def record(results: Sequence[Classification], feed: Feed[Any], stats: RunStats,
           handoffs: Sequence[FrameHandoff[Any]]) -> None:
    """One camera frame into the run's stats and the camera's: its regions' invokes added up, the oldest age."""
    inference_ms = sum(result.timing.inference_ms for result in results)
    age_ms = max(result.timing.age_ms for result in results)
    assert feed.handoff is not None
    if feed.stats is not None:
        feed.stats.record(inference_ms, feed.handoff.dropped, age_ms)
    stats.record(inference_ms, sum(handoff.dropped for handoff in handoffs), age_ms)
