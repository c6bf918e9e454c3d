"""Classifying a frame in two halves: `prepare` on the capture thread, `classify` on the inference loop.

- `ModelSlot`: one model's interpreter, shared by every camera and region that runs the model, and
  replaced between frames (the thermal guard's steps, the Edge TPU failover's moves).
- `FrameClassifier`: one region of a camera's frames (the whole frame by default) through one slot:
  crop and scale into a staging buffer, then copy into the input tensor, invoke, rank.
- `CameraStages`: every region of one camera, prepared from the same frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import EdgeInferError, RuntimeUnavailableError, WorkerDown
from ..sources.base import BufferPool
from ..values import Box, Classification, Frame, PreparedFrame, Timing
from .classifier import Classifier, LoadedModel
from .failover import Failover
from .imx500 import Imx500Classifier
from .postprocess import PostprocessConfig, ScoreSmoother, ranked_classes
from .preprocess import PreprocessConfig, Preprocessor, normalization

log = logging.getLogger(__name__)

MIN_REGION_PIXELS = 8  # a region narrower or lower than this in the frame has nothing to classify


class ModelSlot:
    """The interpreter of one model, replaced between frames.

    `switch` may be called from any thread; the switch itself happens on the inference loop, at its
    next `between_frames`, so no frame is ever invoked on a half-replaced classifier. The old
    classifier is kept until the new one is made (a failed switch stays where it was), then dropped.
    `generation` counts the replacements: a frame prepared for an older one is passed over.
    """

    def __init__(self, classifier: Classifier, make: Callable[[str], Classifier] | None = None, model: str = "",
                 failover: Failover[Classifier] | None = None) -> None:
        self._current = (0, classifier)  # (generation, classifier): replaced as one reference
        self._make = make
        self._model = model or classifier.info.path  # the model asked for: the configured one, or the guard's step
        self._failover = failover
        self._lock = threading.Lock()
        self._wanted: str | None = None

    @property
    def current(self) -> tuple[int, Classifier]:
        return self._current

    @property
    def classifier(self) -> Classifier:
        return self._current[1]

    @property
    def failover(self) -> Failover[Classifier] | None:
        return self._failover

    def switch(self, model: str) -> None:
        with self._lock:
            self._wanted = model

    def between_frames(self) -> None:
        """On the inference loop: a switch asked for, or the Edge TPU tried again after a failover."""
        with self._lock:
            wanted, self._wanted = self._wanted, None
        if wanted is not None and wanted != self._model and self._make is not None:
            self._model = wanted
            try:
                self._replace(self._make(wanted))
            except EdgeInferError as exc:  # a missing or broken ladder model: stay where we are
                log.error("cannot switch to %s: %s; staying on %s", wanted, exc, self.classifier.info.path)
        elif self._failover is not None:
            back = self._failover.retry(self._model)
            if back is not None:
                self._replace(back)

    def invoke(self, classifier: Classifier) -> bool:
        """Invoke `classifier` (this slot's current one); False when the frame is passed over: the Edge TPU
        failed and the run moved to the CPU fallback, or the inference worker is down (and no fallback is set)."""
        try:
            classifier.invoke()
            return True
        except RuntimeUnavailableError as exc:
            worker_down = isinstance(exc, WorkerDown)
            if classifier.info.backend == "cpu" and not worker_down:
                raise
            if self._failover is None:
                if worker_down:  # results pause; the classifier starts its worker again (pipeline/worker.py)
                    return False
                device = {"edgetpu": "the Coral", "hailo": "the Hailo"}.get(classifier.info.backend, "the accelerator")
                raise RuntimeUnavailableError(f"{exc}: check {device}'s connection; with model.fallback_model set, "
                                              f"the run goes on on the CPU and returns to {device} when it answers "
                                              "again") from exc
            self._replace(self._failover.fail_over(exc))
            # Release the dead interpreter and delegate now, not when the last reference goes (a traceback or a
            # log record may keep this object): the Coral's retry would otherwise get their dead driver back.
            classifier.close()
            return False

    def _replace(self, classifier: Classifier) -> None:
        self._current = (self._current[0] + 1, classifier)


# A region's frames are tagged with (slot epoch, slot generation) as one number: the epoch counts the slots the
# region was moved to (a taught model applied to it), the generation the models its slot switched to.
EPOCH = 1 << 32


@dataclass(frozen=True, eq=False)
class RegionPlan:
    """How one region is prepared for one generation of its slot's classifier: built once, swapped whole."""

    generation: int  # epoch * EPOCH + the slot's generation
    preprocessor: Preprocessor | None  # None: the network runs on the camera's sensor (the AI Camera)
    staging: BufferPool
    shape: tuple[int, int, int]
    dtype: np.dtype


class FrameClassifier:
    """One region of a camera's frames (the whole frame by default), classified by its slot's model.

    `prepare` runs on the capture thread: it scales the region into a staging buffer shaped like the
    input tensor, so preprocessing the next frame overlaps inference on this one. `classify` runs on
    the inference loop: copy the staged input into the tensor, invoke, postprocess. Every buffer is
    allocated once per model (a switched model gets its own, once).
    """

    def __init__(self, model: Classifier | ModelSlot, preprocess: PreprocessConfig, postprocess: PostprocessConfig,
                 *, box: Box = Box.WHOLE, camera: str | None = None, region: str | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 frame_watchers: Sequence[Callable[[Frame], None]] = (),
                 on_new_model: Callable[[LoadedModel], None] | None = None) -> None:
        """`on_new_model`: told, on the capture thread, of each model that starts to classify the region after
        the first (the run has the camera's source deliver frames for its input: SourceHints)."""
        # (epoch, slot), replaced as one reference: the capture thread reads it while the loop may move the region
        self._state = (0, model if isinstance(model, ModelSlot) else ModelSlot(model))
        self._moving_to: ModelSlot | None = None
        self._moving_lock = threading.Lock()
        self.box = box
        self.camera, self.region = camera, region
        self._preprocess = preprocess
        self._postprocess = postprocess
        self._clock = clock
        self._frame_watchers = tuple(frame_watchers)  # outputs that show the pictures (FrameWatcher.see_frame)
        self._on_new_model = on_new_model
        self._plan = self._plan_for(*self._tagged())
        self._smoother: ScoreSmoother | None = None
        self._scores = np.empty(0, np.float32)
        self._frame_shape: tuple[int, ...] = ()

    def _plan_for(self, generation: int, classifier: Classifier) -> RegionPlan:
        info = classifier.info
        if classifier.on_sensor:
            return RegionPlan(generation, None, BufferPool(), (0, 0, 0), np.dtype(np.float32))
        mean, std = normalization(self._preprocess, info.packed)
        preprocessor = Preprocessor(info.input, crop=self._preprocess.crop,
                                    interpolation=self._preprocess.interpolation, mean=mean, std=std, box=self.box)
        return RegionPlan(generation, preprocessor, BufferPool(), (info.input.height, info.input.width, 3),
                          np.dtype(info.input.dtype))

    @property
    def slot(self) -> ModelSlot:
        return self._state[1]

    @property
    def classifier(self) -> Classifier:
        return self.slot.classifier

    @property
    def next_slot(self) -> ModelSlot:
        """The slot its next frame runs on: the one `use` asked for, else its own."""
        return self._moving_to or self.slot

    def use(self, slot: ModelSlot) -> None:
        """Run this region on `slot` from its next frame (from any thread; the move happens on the loop)."""
        with self._moving_lock:
            self._moving_to = slot

    def _tagged(self) -> tuple[int, Classifier]:
        epoch, slot = self._state
        generation, classifier = slot.current
        return epoch * EPOCH + generation, classifier

    def prepare(self, frame: Frame) -> PreparedFrame:
        """The whole of a one-region camera's capture step: show the frame to the watchers, prepare, release."""
        prepared = self.prepare_region(frame)
        for watch in self._frame_watchers:
            watch(frame)
        frame.release()  # the pixels are in the staging buffer now
        return prepared

    def prepare_region(self, frame: Frame) -> PreparedFrame:
        """This region of `frame`, scaled into a staging buffer; the frame stays the caller's."""
        start = self._clock()
        generation, classifier = self._tagged()
        plan = self._plan
        if plan.generation != generation:  # the slot switched models: new input size, new buffers
            plan = self._plan = self._plan_for(generation, classifier)
            if self._on_new_model is not None and plan.preprocessor is not None:
                self._on_new_model(classifier.info)
        if frame.image.shape != self._frame_shape:  # the first frame, or the source changed its size
            self._frame_shape = frame.image.shape
            self._warn_if_tiny(frame.image.shape[1], frame.image.shape[0])
        if plan.preprocessor is None:  # the sensor classified the frame: its outputs are the input of `classify`
            sensor = frame.sensor
            outputs = sensor.outputs if sensor is not None else np.empty(0, np.float32)
            return PreparedFrame(frame.seq, frame.ts, frame.path, outputs, (self._clock() - start) * 1e3,
                                 captured=frame.captured, generation=generation,
                                 sensor_ms=sensor.inference_ms if sensor is not None else None)
        staged = plan.staging.take()
        if staged is None:
            staged = np.empty(plan.shape, plan.dtype)
        plan.preprocessor(frame.image, staged)
        pool = plan.staging
        return PreparedFrame(frame.seq, frame.ts, frame.path, staged, (self._clock() - start) * 1e3,
                             release=lambda: pool.give_back(staged), captured=frame.captured,
                             generation=generation)

    def _warn_if_tiny(self, width: int, height: int) -> None:
        """A region too small for the frame the camera really delivers (its size was not known at start)."""
        if self.region is None:
            return
        _, _, region_width, region_height = self.box.pixels(width, height)
        if min(region_width, region_height) < MIN_REGION_PIXELS:
            log.warning("camera %s, region %s: only %dx%d pixels of the camera's %dx%d frames, too few to classify: "
                        "make its box larger", self.camera, self.region, region_width, region_height, width, height)

    def classify(self, prepared: PreparedFrame) -> Classification | None:
        """The result, or None when the frame is passed over: prepared for a model that was switched away
        since, or its invoke failed on the Edge TPU (the slot moved to the CPU fallback)."""
        if self._moving_to is not None:  # unlocked look first: a move is rare, a frame is not
            with self._moving_lock:
                moving_to, self._moving_to = self._moving_to, None
            if moving_to is not None and moving_to is not self.slot:  # frames prepared for the old slot: passed over
                self._state = (self._state[0] + 1, moving_to)
        self.slot.between_frames()
        generation, classifier = self._tagged()
        if prepared.generation != generation:
            prepared.release()
            return None
        if classifier.on_sensor:
            return self._classify_on_sensor(prepared, classifier)
        info = classifier.info
        start = self._clock()
        classifier.input_tensor()[...] = prepared.input
        prepared.release()
        copied = self._clock()
        if not self.slot.invoke(classifier):
            return None
        invoked = self._clock()
        scores = classifier.read_scores(self._scores_for(info.output.shape[1]))
        return self._result(prepared, classifier.info, scores, prepared.preprocess_ms + (copied - start) * 1e3,
                            (invoked - copied) * 1e3, invoked)

    def _classify_on_sensor(self, prepared: PreparedFrame, classifier: Classifier) -> Classification | None:
        """A frame the AI Camera's sensor classified: its outputs as probabilities, ranked; its time is the
        sensor's. A frame the network has not answered for (the first ones after a start) is passed over."""
        if prepared.sensor_ms is None:
            return None
        assert isinstance(classifier, Imx500Classifier)
        start = self._clock()
        probabilities = classifier.scores(prepared.input)
        scores = self._scores_for(len(probabilities))
        scores[...] = probabilities
        return self._result(prepared, classifier.info, scores, prepared.preprocess_ms, prepared.sensor_ms, start)

    def _scores_for(self, classes: int) -> np.ndarray:
        """The scores buffer, made again (with the smoother) for the first frame or a model with other classes."""
        if self._scores.shape[0] != classes:
            self._scores = np.empty(classes, np.float32)
            smoothing = self._postprocess.smoothing
            self._smoother = ScoreSmoother(smoothing, classes) if smoothing > 1 else None
        return self._scores

    def _result(self, prepared: PreparedFrame, info: LoadedModel, scores: np.ndarray, preprocess_ms: float,
                inference_ms: float, post_start: float) -> Classification:
        """Smooth and rank `scores`; the postprocessing time is from `post_start` to now."""
        if self._smoother is not None:
            scores = self._smoother.update(scores)
        post = self._postprocess
        top = ranked_classes(scores, info.labels, post.top_k, post.threshold, post.unknown_below)
        timing = Timing(preprocess_ms, inference_ms, (self._clock() - post_start) * 1e3,
                        (time.monotonic() - prepared.captured) * 1e3)
        return Classification(prepared.seq, prepared.ts, info.name, info.backend, top, timing, prepared.path,
                              self.camera, self.region)


@dataclass(frozen=True, eq=False)
class PreparedCameraFrame:
    """One camera frame, prepared once per region; the pixels themselves are already back in the source's pool."""

    regions: tuple[PreparedFrame, ...]
    captured: float = field(default_factory=time.monotonic)

    def release(self) -> None:
        for prepared in self.regions:
            prepared.release()


class CameraStages:
    """Every region of one camera: `prepare` (capture thread) crops and scales each region straight out of
    the frame (views, no copy of the frame), `classify` (inference loop) gives one result per region."""

    def __init__(self, regions: Sequence[FrameClassifier], frame_watchers: Sequence[Callable[[Frame], None]] = ()
                 ) -> None:
        self.regions = tuple(regions)
        self._frame_watchers = tuple(frame_watchers)

    def prepare(self, frame: Frame) -> PreparedCameraFrame:
        prepared = tuple(region.prepare_region(frame) for region in self.regions)
        for watch in self._frame_watchers:
            watch(frame)
        frame.release()
        return PreparedCameraFrame(prepared, frame.captured)

    def classify(self, prepared: PreparedCameraFrame) -> tuple[Classification, ...]:
        results = []
        for region, item in zip(self.regions, prepared.regions, strict=True):
            result = region.classify(item)
            if result is not None:
                results.append(result)
        return tuple(results)
