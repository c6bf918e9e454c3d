"""Classifying one frame, in two halves: `prepare` on the capture thread, `classify` on the inference loop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import EdgeInferError, RuntimeUnavailableError
from ..sources.base import BufferPool
from ..values import Classification, Frame, PreparedFrame, Timing
from .classifier import Classifier
from .failover import Failover
from .postprocess import PostprocessConfig, ScoreSmoother, ranked_classes
from .preprocess import PreprocessConfig, Preprocessor, normalization

log = logging.getLogger(__name__)


class FrameClassifier:
    """The two halves of classifying a frame; every buffer is allocated here, once.

    `prepare` runs on the capture thread: it scales the frame into a staging buffer shaped like
    the input tensor, so preprocessing the next frame overlaps inference on this one. `classify`
    runs on the inference loop: copy the staged input into the tensor, invoke, postprocess.
    """

    def __init__(self, classifier: Classifier, preprocess: PreprocessConfig, postprocess: PostprocessConfig,
                 clock: Callable[[], float] = time.perf_counter,
                 frame_watchers: Sequence[Callable[[Frame], None]] = ()) -> None:
        info = classifier.info
        self._classifier = classifier
        mean, std = normalization(preprocess, info.packed)
        self._preprocessor = Preprocessor(info.input, crop=preprocess.crop, interpolation=preprocess.interpolation,
                                          mean=mean, std=std)
        self.input_shape = (info.input.height, info.input.width, 3)
        self.input_dtype = np.dtype(info.input.dtype)
        self.model_path = info.path
        self._staging = BufferPool()
        self._scores = np.empty(info.output.shape[1], np.float32)
        self._smoother = ScoreSmoother(postprocess.smoothing, len(self._scores)) if postprocess.smoothing > 1 else None
        self._top_k = postprocess.top_k
        self._threshold = postprocess.threshold
        self._clock = clock
        self._frame_watchers = tuple(frame_watchers)  # outputs that show the pictures (FrameWatcher.see_frame)

    def prepare(self, frame: Frame) -> PreparedFrame:
        start = self._clock()
        staged = self._staging.take()
        if staged is None:
            staged = np.empty(self.input_shape, self.input_dtype)
        self._preprocessor(frame.image, staged)
        for watch in self._frame_watchers:
            watch(frame)
        frame.release()  # the pixels are in the staging buffer now
        pool = self._staging
        return PreparedFrame(frame.seq, frame.ts, frame.path, staged, (self._clock() - start) * 1e3,
                             release=lambda: pool.give_back(staged), captured=frame.captured)

    @property
    def classifier(self) -> Classifier:
        return self._classifier

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
                        (done - invoked) * 1e3, (time.monotonic() - prepared.captured) * 1e3)
        return Classification(prepared.seq, prepared.ts, info.name, info.backend, top, timing, prepared.path)


class SwitchableStages:
    """The stages of the model in use, replaced between frames: the thermal guard's steps, and the
    Edge TPU failover's moves to the CPU fallback and back.

    `switch` may be called from any thread; the switch itself happens on the inference loop, at its
    next `classify`, so no frame is ever invoked on a half-replaced classifier. The old classifier is
    kept until the new one is made (a failed switch stays where it was), then dropped. A frame prepared
    for the old model's input while the switch happened is passed over (classify returns None), and so
    is the frame whose invoke failed on the Edge TPU.
    """

    def __init__(self, stages: FrameClassifier, make: Callable[[str], FrameClassifier], model: str,
                 failover: Failover[FrameClassifier] | None = None) -> None:
        self._current = stages
        self._make = make
        self._model = model  # the model asked for: the configured one, or the guard's step
        self._failover = failover
        self._lock = threading.Lock()
        self._wanted: str | None = None

    @property
    def current(self) -> FrameClassifier:
        return self._current

    @property
    def failover(self) -> Failover[FrameClassifier] | None:
        return self._failover

    def switch(self, model: str) -> None:
        with self._lock:
            self._wanted = model

    def prepare(self, frame: Frame) -> PreparedFrame:
        return self._current.prepare(frame)

    def classify(self, prepared: PreparedFrame) -> Classification | None:
        self._between_frames()
        if prepared.input.shape != self._current.input_shape or prepared.input.dtype != self._current.input_dtype:
            prepared.release()
            return None
        try:
            return self._current.classify(prepared)
        except RuntimeUnavailableError as exc:
            if self._current.classifier.info.backend != "edgetpu":
                raise
            if self._failover is None:
                raise RuntimeUnavailableError(f"{exc}: check the Coral's connection; with model.fallback_model set, "
                                              "the run goes on on the CPU and returns to the Coral when it answers "
                                              "again") from exc
            self._current = self._failover.fail_over(exc)
            return None

    def _between_frames(self) -> None:
        with self._lock:
            wanted, self._wanted = self._wanted, None
        if wanted is not None and wanted != self._model:
            self._model = wanted
            self._replace(wanted)
        elif self._failover is not None:
            back = self._failover.retry(self._model)
            if back is not None:
                self._current = back

    def _replace(self, model: str) -> None:
        try:
            self._current = self._make(model)
        except EdgeInferError as exc:  # a missing or broken ladder model: stay where we are
            log.error("cannot switch to %s: %s; staying on %s", model, exc, self._current.model_path)
