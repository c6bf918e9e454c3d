"""Classifying one frame, in two halves: `prepare` on the capture thread, `classify` on the inference loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ..sources.base import BufferPool
from ..values import Classification, Frame, PreparedFrame, Timing
from .classifier import Classifier
from .postprocess import PostprocessConfig, ScoreSmoother, ranked_classes
from .preprocess import PreprocessConfig, Preprocessor, normalization


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
        self._input_shape = (info.input.height, info.input.width, 3)
        self._input_dtype = info.input.dtype
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
            staged = np.empty(self._input_shape, self._input_dtype)
        self._preprocessor(frame.image, staged)
        for watch in self._frame_watchers:
            watch(frame)
        frame.release()  # the pixels are in the staging buffer now
        pool = self._staging
        return PreparedFrame(frame.seq, frame.ts, frame.path, staged, (self._clock() - start) * 1e3,
                             release=lambda: pool.give_back(staged), captured=frame.captured)

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
