"""The inference loop: newest frame -> preprocess -> invoke -> postprocess -> outputs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .capture import FrameHandoff, start_capture
from .classifier import Classifier
from .config import PostprocessConfig, PreprocessConfig
from .outputs import Output, OutputClosed
from .postprocess import ScoreSmoother, ranked_classes
from .preprocess import Preprocessor
from .sources.base import BufferPool, Source
from .stats import RunStats
from .values import Classification, Frame, PreparedFrame, Timing

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often a waiting loop looks at the stop event
CAPTURE_JOIN_SECONDS = 1.0


class Stages(Protocol):
    def prepare(self, frame: Frame) -> PreparedFrame: ...

    def classify(self, prepared: PreparedFrame) -> Classification: ...


DEFAULT_NORMALIZATION = (127.5, 127.5)  # MobileNets are trained on pixels scaled to [-1, 1]


def normalization(preprocess: PreprocessConfig, packed: dict[str, Any]) -> tuple[float, float]:
    """(mean, std): the configured values, else the model's own metadata, else MobileNet's [-1, 1]."""
    mean = preprocess.mean if preprocess.mean is not None else packed.get("mean", DEFAULT_NORMALIZATION[0])
    std = preprocess.std if preprocess.std is not None else packed.get("std", DEFAULT_NORMALIZATION[1])
    return float(mean), float(std)


class FrameClassifier:
    """The two halves of classifying a frame; every buffer is allocated here, once.

    `prepare` runs on the capture thread: it scales the frame into a staging buffer shaped like
    the input tensor, so preprocessing the next frame overlaps inference on this one. `classify`
    runs on the inference loop: copy the staged input into the tensor, invoke, postprocess.
    """

    def __init__(self, classifier: Classifier, preprocess: PreprocessConfig, postprocess: PostprocessConfig,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        info = classifier.info
        self._classifier = classifier
        mean, std = normalization(preprocess, info.packed)
        self._preprocessor = Preprocessor(info.input, crop=preprocess.crop, interpolation=preprocess.interpolation,
                                          mean=mean, std=std)
        self._input_shape = info.input.shape[1:]
        self._input_dtype = info.input.dtype
        self._staging = BufferPool()
        self._scores = np.empty(info.output.shape[1], np.float32)
        self._smoother = ScoreSmoother(postprocess.smoothing, len(self._scores)) if postprocess.smoothing > 1 else None
        self._top_k = postprocess.top_k
        self._threshold = postprocess.threshold
        self._clock = clock

    def prepare(self, frame: Frame) -> PreparedFrame:
        start = self._clock()
        staged = self._staging.take()
        if staged is None:
            staged = np.empty(self._input_shape, self._input_dtype)
        self._preprocessor(frame.image, staged)
        frame.release()  # the pixels are in the staging buffer now
        pool = self._staging
        return PreparedFrame(frame.seq, frame.ts, frame.path, staged, (self._clock() - start) * 1e3,
                             release=lambda: pool.give_back(staged))

    def classify(self, prepared: PreparedFrame) -> Classification:
        info = self._classifier.info
        start = self._clock()
        self._classifier.input_tensor()[...] = prepared.input
        prepared.release()
        copied = self._clock()
        self._classifier.invoke()
        invoked = self._clock()
        scores = self._classifier.read_scores(self._scores)
        if self._smoother is not None:
            scores = self._smoother.update(scores)
        top = ranked_classes(scores, info.labels, self._top_k, self._threshold)
        done = self._clock()
        timing = Timing(prepared.preprocess_ms + (copied - start) * 1e3, (invoked - copied) * 1e3,
                        (done - invoked) * 1e3)
        return Classification(prepared.seq, prepared.ts, info.name, info.backend, top, timing, prepared.path)

    def __call__(self, frame: Frame) -> Classification:
        """Both halves in one thread, for callers without a capture thread."""
        return self.classify(self.prepare(frame))


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


def run_pipeline(source: Source, stages: Stages, outputs: list[Output],
                 stop: threading.Event, *, every_frame: bool, max_frames: int = 0,
                 stats: RunStats | None = None) -> RunStats:
    """Classify frames from `source` until it ends, `max_frames` are done, or `stop` is set.

    Raises the source's error (SourceError) after publishing every frame that came before it.
    """
    handoff = FrameHandoff(capacity=2 if every_frame else 1, drop_oldest=not every_frame, stop=stop)
    capture = start_capture(source, stages.prepare, handoff, stop)
    stats = stats or RunStats()
    try:
        while not stop.is_set() and outputs:
            frame = handoff.get(POLL_SECONDS)
            if frame is None:
                if handoff.exhausted:
                    break
                continue
            result = stages.classify(frame)
            stats.record(result.timing.inference_ms, handoff.dropped)
            publish(result, outputs, stats)
            if max_frames and stats.frames >= max_frames:
                break
    finally:
        stop.set()
        capture.join(CAPTURE_JOIN_SECONDS)
        stats.dropped = handoff.dropped
        if capture.is_alive():  # blocked in a driver read; closing under it could crash the driver
            log.debug("capture thread still reading; leaving the source to process exit")
        else:
            source.close()
    if handoff.error is not None:
        raise handoff.error
    return stats
