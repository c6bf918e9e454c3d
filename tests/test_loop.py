"""The inference loop over several feeds (pipeline/loop.py run_feeds), with paced stand-in cameras and a stand-in
model of a set speed: fairness and stalls are timing properties no real camera produces on demand."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
from conftest import ListOutput

from edge_infer.pipeline.loop import Feed, OneResult, run_feeds
from edge_infer.values import Class, Classification, Frame, Timing


class PacedSource:
    """A live camera delivering `fps` frames a second until stopped."""

    live = True
    skipped = 0

    def __init__(self, name: str, fps: float, stop: threading.Event) -> None:
        self.description = name
        self._interval = 1.0 / fps
        self._stop = stop
        self._seq = 0
        self._image = np.zeros((4, 4, 3), np.uint8)

    def read(self) -> Frame | None:
        if self._stop.wait(self._interval):
            return None
        self._seq += 1
        return Frame(self._seq, self._image, time.time())

    def close(self) -> None:
        pass


class SlowStages:
    """Stands in for a model taking `seconds` per invoke."""

    def __init__(self, name: str, seconds: float) -> None:
        self._name = name
        self._seconds = seconds

    def prepare(self, frame: Frame) -> Frame:
        return frame

    def classify(self, frame: Frame) -> Classification:
        time.sleep(self._seconds)
        return Classification(frame.seq, frame.ts, "m", "cpu", (Class(0, "x", 1.0),), Timing(0, self._seconds * 1e3, 0),
                              camera=self._name)


def run_for(seconds: float, feeds: list[tuple[str, float]], invoke_s: float) -> Counter[str]:
    stop = threading.Event()
    sink = ListOutput()
    made = [Feed(PacedSource(name, fps, stop), OneResult(SlowStages(name, invoke_s)), every_frame=False, name=name)
            for name, fps in feeds]
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    run_feeds(made, [sink], stop)
    timer.cancel()
    return Counter(result.camera for result in sink.results)


def test_a_fast_camera_does_not_starve_a_slow_one():
    # Inference (20 ms) is the bottleneck: 50 results a second to share. The 5 fps camera gets every frame
    # it has; the 100 fps one gets the rest.
    served = run_for(2.0, [("fast", 100.0), ("slow", 5.0)], invoke_s=0.02)
    assert served["slow"] >= 8, served
    assert served["fast"] >= 5 * served["slow"], served


def test_equal_cameras_get_equal_turns():
    served = run_for(2.0, [("a", 100.0), ("b", 100.0), ("c", 100.0)], invoke_s=0.01)
    assert min(served.values()) >= 0.8 * max(served.values()), served


def test_a_camera_that_stalls_costs_the_others_nothing():
    served = run_for(1.5, [("alive", 100.0), ("stalled", 0.001)], invoke_s=0.005)
    assert served["stalled"] == 0 and served["alive"] >= 50, served
