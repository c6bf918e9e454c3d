"""Accelerator -> CPU failover: a Coral or a Hailo that stops answering mid-run does not end the run.

When an invoke on the Edge TPU fails (libedgetpu's CustomOpInvoke reports "Failed to execute
request" once the USB device is gone: google-coral/libedgetpu tflite/custom_op_direct.cc), the run
goes on with `model.fallback_model` on the CPU, and tries the Edge TPU again between frames with
backoff (1 s, doubling to 60 s): a new delegate (tflite_plugin_create_delegate opens the device
afresh, and returns no delegate while none is there: tflite/edgetpu_delegate_for_custom_op_tflite_plugin.cc)
and a new interpreter, since the old ones hold a device handle that is dead. The old ones are released at the
fail-over (ModelSlot.invoke, Classifier.close): while they live, libedgetpu hands a new delegate their dead
driver (tflite/edgetpu_manager_direct.cc, TryMatchDriverWrapper). A run that could not open the Edge TPU at
start-up, and fell back, starts out here too, so a Coral plugged in later is used.

The Hailo goes the same way (pipeline/hailo.py): a run() that fails mid-run moves the run to the fallback; its
classifier's close() releases the VDevice, and each retry makes a new one (HailoRT marks the device as used by
one VDevice at a time: libhailort/src/vdevice/vdevice.cpp, create_devices).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from ..errors import EdgeInferError, WorkerDown
from ..sources.reconnect import Backoff
from ..values import AcceleratorHealth

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
LONGEST_RETRY_S = 60.0  # a Coral comes back when somebody plugs it in: once a minute is soon enough
ACCELERATOR_NAMES = {"edgetpu": "the Edge TPU", "hailo": "the Hailo"}  # as the log lines name them

StagesT = TypeVar("StagesT")  # what the caller runs: FrameClassifier in a run


class Failover(Generic[StagesT]):
    """Decides when to leave the accelerator and when to try it again; the stages are made by the caller.

    `accelerator` is its backend name ("edgetpu", "hailo"), the state `health` reports while it runs.
    `accelerated(model)` makes `model`'s stages on the accelerator or raises (an EdgeInferError);
    `fallback()` makes the CPU fallback's. Both run on the inference loop, between frames.
    """

    def __init__(self, accelerated: Callable[[str], StagesT], fallback: Callable[[], StagesT], fallback_name: str, *,
                 lost_at_start: bool = False, clock: Callable[[], float] = time.monotonic,
                 accelerator: str = "edgetpu") -> None:
        self._accelerated = accelerated
        self._fallback = fallback
        self._fallback_name = fallback_name
        self._clock = clock
        self._accelerator = accelerator
        self._what = ACCELERATOR_NAMES.get(accelerator, accelerator)
        self._failovers = 0
        self._lost_total = 0.0
        self._lost_at: float | None = None
        self._backoff = Backoff(FIRST_RETRY_S, LONGEST_RETRY_S)
        self._retry_at = 0.0
        if lost_at_start:
            self._start_outage()

    @property
    def lost(self) -> bool:
        return self._lost_at is not None

    def health(self) -> AcceleratorHealth:
        current = self._clock() - self._lost_at if self._lost_at is not None else 0.0
        return AcceleratorHealth("lost" if self.lost else self._accelerator, self._failovers,
                                 self._lost_total + current)

    def fail_over(self, error: EdgeInferError) -> StagesT:
        """The accelerator failed an invoke: the fallback's stages. Raises `error` if the fallback cannot load."""
        try:
            stages = self._fallback()
        except EdgeInferError as exc:
            log.error("%s failed (%s) and the fallback model cannot run: %s", self._what, error, exc)
            raise error from exc
        self._start_outage()
        if isinstance(error, WorkerDown):  # the worker died, not necessarily the device: a new one at once
            self._retry_at = self._lost_at or 0.0
        log.warning("%s: running %s on the CPU, trying %s again every %g-%g s", error,
                    self._fallback_name, self._what, FIRST_RETRY_S, LONGEST_RETRY_S)
        return stages

    def retry(self, model: str) -> StagesT | None:
        """While lost and a retry is due: `model`'s stages on the accelerator if it answers again, else None."""
        if self._lost_at is None or self._clock() < self._retry_at:
            return None
        try:
            stages = self._accelerated(model)
        except EdgeInferError as exc:
            delay = self._backoff.next()
            self._retry_at = self._clock() + delay
            log.debug("%s is still not answering (%s); next try in %g s", self._what, exc, delay)
            return None
        now = self._clock()
        log.warning("%s is back after %.1f s: classifying on it again", self._what, now - self._lost_at)
        self._lost_total += now - self._lost_at
        self._lost_at = None
        return stages

    def _start_outage(self) -> None:
        self._failovers += 1
        self._lost_at = self._clock()
        self._backoff.reset()
        self._retry_at = self._lost_at + self._backoff.next()
