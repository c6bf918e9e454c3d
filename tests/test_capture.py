"""The hand-off and the run loop, with scripted sources: the faults here (a camera dying mid-stream,
a reader slower than the camera) cannot be produced on demand by real hardware."""

import threading
import time

import numpy as np
import pytest
from conftest import ListOutput

from edge_infer.errors import SourceError
from edge_infer.outputs.base import OutputClosed
from edge_infer.pipeline.capture import FrameHandoff
from edge_infer.pipeline.loop import run_pipeline
from edge_infer.values import Class, Classification, Frame, Timing

PIXELS = np.zeros((4, 4, 3), np.uint8)


def frame(seq: int, released: list[int] | None = None) -> Frame:
    return Frame(seq, PIXELS, 0.0, release=(lambda: released.append(seq)) if released is not None else lambda: None)


def test_newest_mode_keeps_only_the_newest_and_counts_drops():
    released: list[int] = []
    handoff = FrameHandoff(capacity=1, drop_oldest=True, stop=threading.Event())
    for seq in range(1, 6):
        assert handoff.put(frame(seq, released))
    assert handoff.get(0).seq == 5
    assert handoff.dropped == 4
    assert released == [1, 2, 3, 4]  # dropped frames give their buffers back


def test_all_mode_waits_for_room_and_loses_nothing():
    handoff = FrameHandoff(capacity=2, drop_oldest=False, stop=threading.Event())
    producer = threading.Thread(target=lambda: [handoff.put(frame(s)) for s in range(1, 21)] and handoff.finish())
    producer.start()
    got = []
    while not handoff.exhausted:
        item = handoff.get(0.5)
        if item is not None:
            got.append(item.seq)
            assert len(handoff._frames) <= 2  # bounded
    producer.join(2)
    assert got == list(range(1, 21)) and handoff.dropped == 0


def test_a_waiting_producer_gives_up_when_the_run_stops():
    stop = threading.Event()
    handoff = FrameHandoff(capacity=1, drop_oldest=False, stop=stop)
    assert handoff.put(frame(1))
    stop.set()
    assert handoff.put(frame(2)) is False


class ScriptedSource:
    """Delivers `count` frames, then ends, or raises `error` (a camera unplugged mid-stream)."""

    live = True
    skipped = 0
    description = "scripted camera"

    def __init__(self, count: int, error: Exception | None = None, delay: float = 0.0) -> None:
        self.count, self.error, self.delay = count, error, delay
        self.sent = 0
        self.closed = False

    def read(self) -> Frame | None:
        time.sleep(self.delay)
        if self.sent == self.count:
            if self.error:
                raise self.error
            return None
        self.sent += 1
        return frame(self.sent)

    def close(self) -> None:
        self.closed = True


class FakeStages:
    """Stands in for FrameClassifier: `prepare` passes the frame on, `classify` takes `delay` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def prepare(self, item: Frame) -> Frame:
        return item

    def classify(self, item: Frame) -> Classification:
        time.sleep(self.delay)
        return Classification(item.seq, item.ts, "m", "cpu", (Class(1, "x", 1.0),), Timing(0, 0, 0))


def fake_classify(delay: float = 0.0) -> FakeStages:
    return FakeStages(delay)


def test_every_frame_before_a_source_failure_is_published_then_the_error_is_raised():
    source = ScriptedSource(5, SourceError("scripted camera stopped delivering frames"))
    output = ListOutput()
    with pytest.raises(SourceError, match="stopped delivering"):
        run_pipeline(source, fake_classify(), [output], threading.Event(), every_frame=True)
    assert [r.frame for r in output.results] == [1, 2, 3, 4, 5]
    assert not source.closed  # the caller's source: the run assembly closes what it opened (test_run.py)


def test_an_unexpected_source_exception_becomes_a_source_error():
    source = ScriptedSource(1, OSError("USB disconnect"))
    with pytest.raises(SourceError, match="scripted camera failed: OSError: USB disconnect"):
        run_pipeline(source, fake_classify(), [ListOutput()], threading.Event(), every_frame=True)


def test_a_slow_loop_on_live_video_drops_frames_instead_of_lagging():
    source = ScriptedSource(60, delay=0.002)
    output = ListOutput()
    stats = run_pipeline(source, fake_classify(delay=0.02), [output], threading.Event(), every_frame=False)
    assert stats.dropped > 0
    assert stats.frames + stats.dropped == 60
    seqs = [r.frame for r in output.results]
    assert seqs == sorted(seqs) and seqs[-1] == 60  # in order, and the last frame is always classified


def test_max_frames_stops_the_run():
    stats = run_pipeline(ScriptedSource(100), fake_classify(), [ListOutput()], threading.Event(),
                         every_frame=True, max_frames=7)
    assert stats.frames == 7


def test_a_failing_output_does_not_stop_the_others():
    class Broken(ListOutput):
        name = "broken"

        def publish(self, result: Classification) -> None:
            raise ConnectionError("broker down")

    good = ListOutput()
    stats = run_pipeline(ScriptedSource(4), fake_classify(), [Broken(), good], threading.Event(), every_frame=True)
    assert len(good.results) == 4 and stats.output_errors == 4


def test_a_closed_output_is_removed_and_the_run_ends_when_none_is_left():
    class ClosesAfterTwo(ListOutput):
        def publish(self, result: Classification) -> None:
            if len(self.results) == 2:
                raise OutputClosed("reader went away")
            super().publish(result)

    output = ClosesAfterTwo()
    stats = run_pipeline(ScriptedSource(1000, delay=0.001), fake_classify(), [output], threading.Event(),
                         every_frame=True)
    assert len(output.results) == 2 and stats.frames == 3


def test_stop_ends_a_live_run_promptly():
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    stats = run_pipeline(ScriptedSource(10**9, delay=0.001), fake_classify(0.005), [ListOutput()], stop,
                         every_frame=False)
    assert time.monotonic() - started < 1.5 and stats.frames > 0
