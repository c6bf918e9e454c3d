"""The Raspberry Pi AI Camera (IMX500): the sensor's firmware, the networks, picamera2's support and the camera.

- Firmware: the imx500 driver loads imx500_loader.fpk and imx500_firmware.fpk from /lib/firmware before the network
  (Raspberry Pi's imx500-firmware package, part of imx500-all); without them the camera starts without a network.
- Networks: imx500-models puts the .rpk files in /usr/share/imx500-models (pipeline/imx500.py resolves names there).
- picamera2's support: picamera2/devices/imx500/imx500.py imports OpenEXR, Imath, jsonschema, libarchive and
  videodev2 at import, each from its own Debian package; one missing and nothing of the AI Camera works.
- The camera: libcamera lists it with Model imx500 (the IMX500 constructor looks for exactly that model in
  Picamera2.global_camera_info()).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import ModelError
from ...pipeline.imx500 import CAMERA_HINT, FIRMWARE_FILES, INSTALL_HINT, resolve_network
from .report import Check, Runner, Verdict, joined, run_command, worst

SUPPORT_PROBE = "import picamera2.devices.imx500"


@dataclass(frozen=True)
class Imx500State:
    """What the machine says about an AI Camera; None where it could not be found out."""

    cameras: tuple[str, ...] | None  # the AI Cameras libcamera lists; None: libcamera could not be asked
    missing_firmware: tuple[str, ...]
    support_error: str | None  # why picamera2.devices.imx500 does not import; None: it does
    network: str | None  # the configured network, as configured
    network_path: str | None  # where it was found
    network_error: str | None


def ai_cameras(listed: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """The AI Cameras among libcamera's cameras, as libcamera_cameras describes them ("imx500 (/base/...)")."""
    if listed is None or isinstance(listed, str):
        return None
    return tuple(camera for camera in listed if camera.split(" ", 1)[0] == "imx500")


def read_imx500(network: str | None, models_dir: str | None, listed: Sequence[str] | str | None,
                run: Runner = run_command, python: str | None = None, env: Mapping[str, str] | None = None,
                root: str = "/") -> Imx500State:
    missing = tuple(file for file in FIRMWARE_FILES if not Path(root, file.lstrip("/")).is_file())
    probe = run([python or sys.executable, "-c", SUPPORT_PROBE], timeout=30, env=env)
    support_error = None
    if probe is None or probe.status != 0:
        support_error = probe.last_error if probe is not None else "the interpreter did not start"
    network_path = network_error = None
    if network is not None:
        try:
            network_path = str(resolve_network(network, models_dir))
        except ModelError as exc:
            network_error = str(exc)
    return Imx500State(ai_cameras(listed), missing, support_error, network, network_path, network_error)


def check_imx500(state: Imx500State, wanted: bool = False, fallback: bool = False) -> Check:
    """`wanted`: model.delegate is imx500; `fallback`: a CPU model runs when the AI Camera cannot."""
    name = "ai-camera"
    if not wanted and not state.cameras:
        return Check(name, "skip", "no AI Camera (not needed: model.delegate is not imx500)")
    # As check_coral: a missing piece fails the run (exit 5) only when the AI Camera is wanted and nothing runs instead.
    missing: Verdict = "fail" if wanted and not fallback else "warn"
    verdicts: list[Verdict] = []
    parts: list[str] = []
    fixes: list[str] = []
    if state.cameras:
        parts.append("libcamera lists " + ", ".join(state.cameras))
    elif state.cameras is None:
        parts.append("libcamera could not be asked for its cameras")
    else:
        verdicts.append(missing)
        parts.append("libcamera lists no imx500")
        fixes.append(CAMERA_HINT)
    if state.missing_firmware:
        verdicts.append(missing)
        parts.append("sensor firmware missing: " + ", ".join(state.missing_firmware))
        fixes.append(INSTALL_HINT)
    else:
        parts.append("sensor firmware installed")
    if state.support_error is not None:
        verdicts.append(missing)
        parts.append(f"picamera2's AI Camera support does not import ({state.support_error})")
        fixes.append(INSTALL_HINT)
    if state.network is not None:
        if state.network_error is not None:
            verdicts.append("fail")  # a ModelError at start: exit 3, fallback or not
            parts.append(state.network_error.split(": ", 1)[0])
            fixes.append(INSTALL_HINT)
        else:
            parts.append(f"network {state.network_path}")
    fixes = list(dict.fromkeys(fixes))  # one install fixes several missing pieces
    return Check(name, worst(verdicts) if verdicts else "ok", "; ".join(parts), joined(fixes))
