"""The AI Camera backend: the Raspberry Pi AI Camera's Sony IMX500 runs the network on the sensor itself.

Written against raspberrypi/picamera2 at 3e6dff0, picamera2/devices/imx500/imx500.py (class IMX500) and
examples/imx500/imx500_classification_demo.py, in the demo's order:
- `IMX500(rpk)` comes before Picamera2 opens the camera: it finds the sensor's V4L2 subdevice (the imx500 driver's),
  hands the kernel the network firmware (__set_network_firmware) and reads the network's intrinsics from the cpio
  archive appended to the .rpk (__ni_from_network); `Picamera2(imx500.camera_num)` then opens that camera
  (sources/picamera2.py). A missing sensor is its RuntimeError "Requested camera dev-node not found".
- The kernel uploads the firmware when the camera starts streaming, so Picamera2.start() blocks for it; the first
  upload of a network takes minutes (upstream shows a progress bar, show_network_fw_progress_bar), later starts find
  it on the sensor and are quick. `SensorNetwork.uploading` reads the progress as upstream does
  (get_fw_upload_progress(FW_NETWORK_STAGE)) where debugfs lets it, logs it, and keeps extending the caller's start
  deadline (systemd's EXTEND_TIMEOUT_USEC) meanwhile.
- Each request's metadata carries the network's output (get_outputs: CnnOutputTensor, shaped by
  CnnOutputTensorInfo) and the sensor's DNN and DSP times (get_kpi_info), which are the result's inference latency.
  The first frames after a start come before the network's first answer, without outputs.
- Scores get a softmax where the intrinsics say the network gives logits (intrinsics.softmax, as the demo applies
  it), and where they do not say but the outputs are not probabilities: Raspberry Pi's imx500_network_mobilenet_v2.rpk
  (raspberrypi/imx500-models at ddfe4c7) says nothing of softmax, and its README lists it with the post-processor
  pp_cls, not pp_cls_softmax: 1000 logits. Labels are model.labels, else the intrinsics' (that .rpk carries 1001,
  "0:background" to "1000:toilet tissue, ...", numbered as Coral's labels files are), else edge-infer's ImageNet
  labels, lined up with 1000 or 1001 outputs as the demo's get_label lines them up; that happens at the first
  output, since only a frame's metadata says how many outputs there are.
- The inference window (set_inference_roi_abs) is the region's box, in full-sensor pixels: the network sees only
  that part of the picture, cropped and scaled on the sensor.

Nothing here runs on the CPU per frame but the softmax and the ranking: the thermal guard has nothing to step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, RuntimeUnavailableError
from ..models.files import IMX500_NETWORKS_DIR as NETWORKS_DIR
from ..models.files import model_dirs
from ..models.graph import GraphCost
from ..models.metadata import align_labels, parse_labels
from ..models.tensors import TensorSpec
from ..values import Box, SensorScores, center_window
from .classifier import Classifier, LoadedModel, ModelConfig

log = logging.getLogger(__name__)

# The loader and main firmware the imx500 driver requests before a network (raspberrypi/linux
# drivers/media/i2c/imx500.c, its request_firmware calls), which Raspberry Pi's imx500-firmware package installs.
FIRMWARE_FILES = ("/lib/firmware/imx500_loader.fpk", "/lib/firmware/imx500_firmware.fpk")
INSTALL_HINT = "install the AI Camera's firmware, networks and tools with 'sudo apt install imx500-all', then reboot"
CAMERA_HINT = ("check the AI Camera's ribbon cable and that 'rpicam-hello --list-cameras' lists an imx500 "
               "(Raspberry Pi OS Bookworm or later, with imx500-all installed)")
FULL_SENSOR = (4056, 3040)  # IMX500.__get_full_sensor_resolution: the coordinates of the inference window
FW_NETWORK_STAGE = 2  # imx500.py: the network stage of the firmware upload (after the loader's and the main one)
PROGRESS_EVERY_S = 0.5  # upstream's progress bar reads the debugfs files as often (__do_progress_bar)
LOG_EVERY_S = 5.0
EXTEND_S = 30.0  # each extension of the start deadline; the progress is read far more often
IMAGENET_LABELS = "imagenet_labels.txt"  # package data of edge_infer.models: 1001 labels, background first


def import_imx500() -> tuple[Any, Any]:
    """(IMX500, NetworkIntrinsics) from picamera2. Upstream's module imports OpenEXR, Imath, jsonschema, libarchive
    and videodev2 at once: any of them missing is the same fix."""
    try:
        from picamera2.devices.imx500 import IMX500, NetworkIntrinsics  # type: ignore[import-not-found]
    except Exception as exc:  # ImportError, or an extension built for another numpy
        raise RuntimeUnavailableError(f"the AI Camera support of picamera2 cannot be imported "
                                      f"({type(exc).__name__}: {exc}): {INSTALL_HINT}") from exc
    return IMX500, NetworkIntrinsics


def resolve_network(name: str, models_dir: str | None) -> Path:
    """A .rpk path as given, or a network name (with or without .rpk) in the model directories or the imx500-models
    package's directory."""
    given = Path(name).expanduser()
    if given.is_file():
        return given
    if not given.is_absolute() and "/" not in name:
        searched = [*model_dirs(models_dir), Path(NETWORKS_DIR)]
        stem = name.removesuffix(".rpk")
        for directory in searched:
            if (directory / f"{stem}.rpk").is_file():
                return directory / f"{stem}.rpk"
        raise ModelError(f"AI Camera network '{name}' not found in {', '.join(map(str, searched))}: "
                         f"{INSTALL_HINT} (it brings the networks into {NETWORKS_DIR}), or give the .rpk's path")
    raise ModelError(f"AI Camera network '{name}' does not exist: give an .rpk file ({NETWORKS_DIR} has "
                     "Raspberry Pi's)")


def network_window(box: Box, crop: str, input_size: tuple[int, int], frame_size: tuple[int, int]) -> tuple[
        int, int, int, int]:
    """The inference window, (left, top, width, height) in full-sensor pixels, for a region's `box` of frames of
    `frame_size`.

    The frames show the centred part of the sensor with their own aspect ratio (the ISP's default crop), so the box
    is a fraction of that part. With crop center, the window is the box's centred part with the network input's
    aspect ratio, as the CPU path crops it; stretch (and letterbox, which the sensor cannot pad) take the box whole
    and the sensor scales it to the input.
    """
    view = center_window(*FULL_SENSOR, *frame_size)
    left, top, width, height = box.pixels(view.width, view.height)
    if crop == "center":
        inner = center_window(width, height, *input_size)
        left, top, width, height = left + inner.x, top + inner.y, inner.width, inner.height
    return view.x + left, view.y + top, width, height


@dataclass(frozen=True)
class UploadProgress:
    done: int
    total: int


class SensorNetwork:
    """The network on the sensor, as the camera's source uses it: which camera, where to look, and each frame's
    outputs. Owned by its classifier; the source borrows it."""

    def __init__(self, device: Any, path: Path, inference_rate: float | None, make: Callable[[], Any]) -> None:
        self._device: Any = device
        self._make = make  # IMX500(rpk) again
        self._handed = False  # whether a camera was opened for the network as it was handed to the sensor
        self.path = path
        self.camera_num: int = device.camera_num
        width, height = device.config.get("input_tensor_size", (224, 224))
        self.input_size = (int(width), int(height))
        self.inference_rate = inference_rate  # the frame rate the network keeps up with, where it says

    def hand_over(self) -> None:
        """Before each opening of the camera. The first finds the network as loading the model handed it; every later
        one (the camera reopened after a failure) hands it again: the imx500 driver forgets the network when the
        sensor powers off, after its autosuspend delay (raspberrypi/linux drivers/media/i2c/imx500.c, imx500_power_off),
        and only IMX500's constructor gives it the firmware (__set_network_firmware)."""
        if self._handed:
            self.close()
            self._device = self._make()
        self._handed = True

    def aim(self, box: Box, crop: str, frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Point the network at `box` of the frames; returns the window set. Upstream prints, not raises, when the
        driver refuses it (set_inference_roi_abs): the network then looks at the whole sensor."""
        window = network_window(box, crop, self.input_size, frame_size)
        self._device.set_inference_roi_abs(window)
        return window

    def read(self, metadata: dict[str, Any]) -> SensorScores | None:
        """The network's output for one request, or None when it has not answered for that frame."""
        outputs = self._device.get_outputs(metadata)
        if not outputs:
            return None
        kpi = self._device.get_kpi_info(metadata)  # (DNN ms, DSP ms); None without the sensor's KPI block
        return SensorScores(np.ravel(outputs[0]).astype(np.float32, copy=False), sum(kpi) if kpi else 0.0)

    def progress(self) -> UploadProgress | None:
        """Where the network firmware's upload is; None where debugfs cannot be read (upstream: FwProgressType.NONE,
        and a read that fails later, e.g. once the upload is over and the files are gone)."""
        if int(getattr(self._device, "fw_progress", 0)) == 0:
            return None
        try:
            done, total = self._device.get_fw_upload_progress(FW_NETWORK_STAGE)
        except Exception:  # subprocess.CalledProcessError from upstream's `cat` of the debugfs files
            return None
        return UploadProgress(int(done), int(total))

    @contextmanager
    def uploading(self, extend: Callable[[float], None], clock: Callable[[], float] = time.monotonic
                  ) -> Iterator[None]:
        """Around the camera's start, which waits for the firmware upload: report progress and keep extending the
        caller's start deadline (`extend(seconds)`) until the block ends. One thread, joined when the block ends."""
        done = threading.Event()
        began = clock()

        def watch() -> None:
            last_log = began
            extend(EXTEND_S)
            last_extend = began
            while not done.wait(PROGRESS_EVERY_S):
                now = clock()
                if now - last_extend >= EXTEND_S / 3:
                    extend(EXTEND_S)
                    last_extend = now
                if now - last_log >= LOG_EVERY_S:
                    last_log = now
                    log.info("AI Camera: %s (%.0f s so far; the first upload of a network takes minutes)",
                             describe_progress(self.progress()), now - began)

        thread = threading.Thread(target=watch, name="imx500-upload", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
        took = clock() - began
        if took >= LOG_EVERY_S:
            log.info("AI Camera: the network firmware is on the sensor (the start took %.0f s)", took)

    def close(self) -> None:
        """Release the sensor's subdevice now (upstream closes it in IMX500.__del__), not when the last reference
        goes."""
        device, self._device = self._device, None
        fd = getattr(device, "device_fd", None)
        if fd is not None:
            fd.close()
            device.device_fd = None


def describe_progress(progress: UploadProgress | None) -> str:
    if progress is None or progress.total <= 0:
        return "uploading the network firmware to the sensor (no progress readable: debugfs is root's)"
    return (f"uploading the network firmware to the sensor: {100 * progress.done / progress.total:.0f} % "
            f"({progress.done / 1e6:.1f} of {progress.total / 1e6:.1f} MB)")


class Imx500Classifier(Classifier):
    """The network on the AI Camera's sensor, as a Classifier: there is nothing to invoke here, the scores come with
    the frames (Frame.sensor) and `scores` turns them into probabilities lined up with the labels."""

    on_sensor = True

    def __init__(self, info: LoadedModel, network: SensorNetwork, softmax: bool | None, labels: list[str],
                 labels_source: str) -> None:
        self.info = info
        self.network = network
        self._softmax = softmax  # None: the intrinsics do not say; the outputs decide, frame by frame
        self._labels = labels  # as given: lined up with the outputs at the first frame
        self._labels_source = labels_source
        self._scores = np.zeros(0, np.float32)

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """One frame's network outputs as probabilities, one per label (a buffer of this classifier's, reused)."""
        if self._scores.shape[0] != outputs.shape[0]:
            self._line_up(outputs.shape[0])
        scores = self._scores
        scores[...] = outputs
        softmax = self._softmax
        if softmax is None:  # probabilities are >= 0 and sum to 1; anything else is logits
            # (an 8-bit output dequantized sums to 1 only within a few percent: 0.965 for MobileNet V2 on cat.bmp)
            softmax = not (scores.min() >= 0.0 and abs(float(scores.sum()) - 1.0) < 0.1)
        if softmax:  # logits: softmax, shifted by the largest for exp's sake
            scores -= scores.max()
            np.exp(scores, out=scores)
            scores /= scores.sum()
        return scores

    def _line_up(self, classes: int) -> None:
        aligned = align_labels(self._labels, classes)
        if aligned is None:
            raise ModelError(f"the AI Camera's network {self.info.name} gives {classes} outputs, and the labels from "
                             f"{self._labels_source} are {len(self._labels)}: set model.labels to its labels file")
        self._scores = np.zeros(classes, np.float32)
        self.info = replace(self.info, labels=aligned, output=replace(self.info.output, shape=(1, classes)))

    def input_tensor(self) -> np.ndarray:
        raise RuntimeError("the AI Camera's network takes its pictures on the sensor, not from the CPU")

    def invoke(self) -> None:
        raise RuntimeError("the AI Camera's network runs on the sensor with every frame: nothing to invoke")

    def cost(self) -> GraphCost:
        return GraphCost({"IMX500": 1}, None, None)  # the network runs on the sensor: nothing here to count

    def close(self) -> None:
        self.network.close()


def load_imx500_classifier(config: ModelConfig) -> Imx500Classifier:
    """Hand the configured network to the AI Camera's sensor (IMX500(rpk)) and read what it is; errors as
    ModelError (a network that is not there or not a classifier) or RuntimeUnavailableError (no picamera2 support,
    no AI Camera: the fallback model's cue)."""
    path = resolve_network(config.path, config.models_dir)
    imx500, intrinsics_class = import_imx500()
    try:
        device = imx500(str(path))
    except RuntimeError as exc:
        text = str(exc)
        if "dev-node not found" in text:
            raise RuntimeUnavailableError(f"no AI Camera (IMX500) found ({text}): {CAMERA_HINT}") from exc
        raise ModelError(f"the AI Camera cannot take '{path}': {text}; use a network from {NETWORKS_DIR} "
                         f"(sudo apt install --reinstall imx500-models)") from exc
    except OSError as exc:  # the subdevice exists but cannot be opened: permissions, or held
        raise RuntimeUnavailableError(f"the AI Camera's sensor cannot be opened ({exc}): run as a user in the "
                                      "'video' group") from exc
    network = SensorNetwork(device, path, None, lambda: imx500(str(path)))
    try:
        intrinsics = device.network_intrinsics or intrinsics_class()
        task = intrinsics.task or "classification"  # the demo takes a network without intrinsics as a classifier
        if task != "classification":
            raise ModelError(f"'{path}' is a {task} network, not a classifier: use a classification network (e.g. "
                             f"imx500_network_mobilenet_v2 from {NETWORKS_DIR})")
        labels, labels_source = network_labels(config.labels, intrinsics.labels)
        network.inference_rate = float(intrinsics.inference_rate) if intrinsics.inference_rate else None
        width, height = network.input_size
        name = path.name.removesuffix(".rpk")
        info = LoadedModel(name, str(path), "imx500", "IMX500 (on the sensor)", 0,
                           TensorSpec(0, (1, height, width, 3), np.uint8, 1.0, 0),
                           TensorSpec(0, (1, len(labels)), np.float32, 0.0, 0), tuple(labels), labels_source, {})
        softmax = intrinsics.softmax  # True, or None: not said
    except BaseException:
        network.close()
        raise
    log.info("model %s: on the AI Camera's sensor, input %dx%d, labels from %s, %s", name, width, height,
             labels_source, "logits, softmax on the CPU" if softmax else "softmax on the CPU unless the outputs are "
             "probabilities")
    return Imx500Classifier(info, network, softmax, labels, labels_source)


def network_labels(labels_file: str | None, intrinsic_labels: list[str] | None) -> tuple[list[str], str]:
    """model.labels, else the labels the .rpk carries in its intrinsics, else edge-infer's 1001 ImageNet labels (the
    demo's default too: examples/imx500/assets/imagenet_labels.txt)."""
    if labels_file:
        try:
            return parse_labels(Path(labels_file).expanduser().read_text()), labels_file
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"cannot read labels file '{labels_file}': {exc}") from exc
    if intrinsic_labels:
        return parse_labels("\n".join(intrinsic_labels)), "the network's intrinsics"
    text = resources.files("edge_infer.models").joinpath(IMAGENET_LABELS).read_text()
    return parse_labels(text), "edge-infer's ImageNet labels (the network carries none)"
