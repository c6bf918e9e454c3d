"""The Hailo AI Kit / AI HAT+: the device node, the driver against the library, and the HEF against the chip.

- The device: the PCIe driver (hailo-ai/hailort-drivers linux/pcie/src/pcie.c) makes /dev/hailo0 for the first
  board ("hailo%d"), mode 0666 by its udev rule (linux/pcie/51-hailo-udev.rules).
- Versions: HailoRT refuses a driver whose version is not the library's, to the revision (HAILO_INVALID_DRIVER_VERSION:
  hailo-ai/hailort libhailort/src/vdma/driver/hailort_driver.cpp, validate_driver_version). The driver's is its
  MODULE_VERSION, /sys/module/hailo_pci/version; the library's is hailo_platform.__version__ (the package refuses to
  import when its _pyhailort is another version: hailo_platform/__init__.py, pyhailort.cpp validate_versions_match).
- The chip: `hailortcli fw-control identify` prints "Device Architecture: HAILO8L" (hailortcli/fw_control_command.cpp;
  picamera2's devices/hailo/hailo.py, hailo_architecture, reads the same line), and `hailortcli parse-hef FILE`
  "Architecture HEF was compiled for: HAILO8" (libhailort/src/hef/hef.cpp, get_description). A Hailo-8 runs HEFs
  for the Hailo-8 and, more slowly, the Hailo-8L; a Hailo-8L only its own (libhailort/src/device_common/
  device_internal.cpp, DeviceBase::is_hef_compatible). A HEF hailortcli cannot parse is judged by its zoo name.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ...errors import ModelError
from ...models.files import resolve_model
from ...models.zoo import build_manifest, find_entry
from ...pipeline.hailo import DEVICE_HINT, DRIVER_VERSION_FILE, INSTALL_HINT, driver_version
from .report import Check, Runner, Verdict, joined, run_command, worst

LIBRARY_PROBE = "import hailo_platform; print(hailo_platform.__version__)"
DEVICE_ARCH_LINE = "Device Architecture:"
HEF_ARCH_LINE = "Architecture HEF was compiled for:"
RUNS_ON = {"HAILO8": {"HAILO8", "HAILO8L"}, "HAILO8L": {"HAILO8L"}}  # device -> HEFs it takes


@dataclass(frozen=True)
class HailoState:
    """What the machine says about its Hailo; None where it could not be found out."""

    device: bool  # /dev/hailo0 exists
    driver: str | None  # the hailo_pci module's version
    library: str | None  # hailo_platform.__version__
    library_error: str | None  # why hailo_platform does not import
    device_arch: str | None  # HAILO8 or HAILO8L
    hef: str | None  # the configured HEF, as configured
    hef_arch: str | None  # the chip it is compiled for


def field_after(text: str, prefix: str) -> str | None:
    """The value of the first `prefix: value` line of a tool's report."""
    for line in text.splitlines():
        if line.strip().startswith(prefix):
            return line.split(":", 1)[1].strip() or None
    return None


def hailo_device(dev: str = "/dev") -> bool:
    return Path(dev, "hailo0").exists()


def read_hailo(hef: str | None, models_dir: str | None, run: Runner = run_command, python: str | None = None,
               env: Mapping[str, str] | None = None, dev: str = "/dev", root: str = "/") -> HailoState:
    device = hailo_device(dev)
    driver = driver_version(str(Path(root, DRIVER_VERSION_FILE.lstrip("/"))))
    probe = run([python or sys.executable, "-c", LIBRARY_PROBE], timeout=30, env=env)
    answered = probe is not None and probe.status == 0 and probe.stdout.strip()
    library = probe.stdout.strip().splitlines()[-1] if answered and probe is not None else None
    library_error = None if library else (probe.last_error if probe is not None else "the interpreter did not start")
    device_arch = None
    if device:
        identify = run(["hailortcli", "fw-control", "identify"], timeout=30)
        if identify is not None and identify.status == 0:
            device_arch = field_after(identify.stdout, DEVICE_ARCH_LINE)
    hef_arch = None
    if hef:
        try:
            path = resolve_model(hef, models_dir)
        except ModelError:
            path = None
        parsed = run(["hailortcli", "parse-hef", str(path)], timeout=30) if path is not None else None
        if parsed is not None and parsed.status == 0:
            hef_arch = field_after(parsed.stdout, HEF_ARCH_LINE)
        if hef_arch is None:  # hailortcli missing or refusing: the zoo knows its own HEFs' chip
            entry = find_entry(build_manifest(), Path(hef).name)
            hef_arch = entry.hailo.upper() if entry is not None and entry.hailo else None
    return HailoState(device, driver, library, library_error, device_arch, hef, hef_arch)


def check_hailo(state: HailoState, wanted: bool = False, fallback: bool = False) -> Check:
    """`wanted`: model.delegate is hailo; `fallback`: a CPU model runs when the Hailo cannot."""
    name = "hailo"
    if not wanted and not state.device:
        return Check(name, "skip", "no Hailo (not needed: model.delegate is not hailo)")
    # As check_coral: a missing piece fails the run (exit 5) only when the Hailo is wanted and nothing runs instead.
    missing: Verdict = "fail" if wanted and not fallback else "warn"
    verdicts: list[Verdict] = []
    parts: list[str] = []
    fixes: list[str] = []
    if state.device:
        parts.append(f"/dev/hailo0 ({state.device_arch})" if state.device_arch else "/dev/hailo0")
    else:
        verdicts.append(missing)
        parts.append("no /dev/hailo0")
        fixes.append(DEVICE_HINT)
    if state.library is None:
        verdicts.append(missing)
        parts.append(f"HailoRT's Python API does not import ({state.library_error})")
        fixes.append(INSTALL_HINT)
    else:
        parts.append(f"HailoRT {state.library}")
    if state.driver is not None and state.library is not None:
        if state.driver == state.library:
            parts.append(f"driver {state.driver} (matches)")
        else:
            verdicts.append(missing)
            parts.append(f"driver {state.driver} is not the library's {state.library}: HailoRT refuses it "
                         "(HAILO_INVALID_DRIVER_VERSION)")
            fixes.append("install the same version of the driver and the library (sudo apt install hailo-all brings "
                         "matching ones), then reboot")
    elif state.device and state.driver is None:
        parts.append("driver version unknown (no /sys/module/hailo_pci/version)")
    if state.hef is not None:
        if state.hef_arch is None:
            parts.append(f"{state.hef}: the chip it is compiled for is unknown (hailortcli parse-hef could not say)")
        elif state.device_arch is None:
            parts.append(f"{state.hef} is compiled for {state.hef_arch}")
        elif state.hef_arch in RUNS_ON.get(state.device_arch, set()):
            slower = " (runs, more slowly than a HAILO8 build)" if state.hef_arch != state.device_arch else ""
            parts.append(f"{state.hef} is compiled for {state.hef_arch}{slower}")
        else:
            verdicts.append("fail")  # a ModelError at start: exit 3, fallback or not
            parts.append(f"{state.hef} is compiled for {state.hef_arch}, not for this {state.device_arch} "
                         "(HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE)")
            fixes.append(f"use a HEF compiled for the {state.device_arch} (edge-infer models list: the "
                         f"*_{state.device_arch.lower()} models)")
    return Check(name, worst(verdicts) if verdicts else "ok", "; ".join(parts), joined(fixes))
