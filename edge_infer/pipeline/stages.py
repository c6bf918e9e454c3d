"""Classifying one frame, in two halves: `prepare` on the capture thread, `classify` on the inference loop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import EdgeInferError
from ..sources.base import BufferPool
from ..values import Classification, Frame, PreparedFrame, Timing
from .classifier import Classifier
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
    """The stages of the model in use, replaced between frames when asked (the thermal guard's steps).

    `switch` may be called from any thread; the switch itself happens on the inference loop, at its
    next `classify`, so no frame is ever invoked on a half-replaced classifier. The old classifier is
    dropped before the new one is made: one interpreter at a time. A frame prepared for the old model's
    input while the switch happened is passed over (classify returns None).
    """

    def __init__(self, stages: FrameClassifier, make: Callable[[str], FrameClassifier]) -> None:
        self._current = stages
        self._make = make
        self._lock = threading.Lock()
        self._wanted: str | None = None

    @property
    def current(self) -> FrameClassifier:
        return self._current

    def switch(self, model: str) -> None:
        with self._lock:
            self._wanted = model

    def prepare(self, frame: Frame) -> PreparedFrame:
        return self._current.prepare(frame)

    def classify(self, prepared: PreparedFrame) -> Classification | None:
        with self._lock:
            wanted, self._wanted = self._wanted, None
        if wanted is not None and wanted != self._current.model_path:
            self._replace(wanted)
        if prepared.input.shape != self._current.input_shape or prepared.input.dtype != self._current.input_dtype:
            prepared.release()
            return None
        return self._current.classify(prepared)

    def _replace(self, model: str) -> None:
        previous = self._current
        try:
            self._current = self._make(model)
        except EdgeInferError as exc:  # a missing or broken ladder model: stay where we are
            log.error("cannot switch to %s: %s; staying on %s", model, exc, previous.model_path)
            self._current = previous
