"""Checks of the hardware around the CPU: the Coral, and the board's governor, temperature and power."""

from __future__ import annotations

import glob
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...models.runtime import EDGETPU_INSTALL_HINT
from .. import board
from .report import Check, Runner, Verdict, joined, run_command, worst

USB_DEVICES = "/sys/bus/usb/devices"

# USB ids of the Coral USB Accelerator: Global Unichip until libedgetpu loads its firmware, Google after
# (the same rule file matches both).
CORAL_USB_IDS = {("1a6e", "089a"): "USB Coral (firmware not loaded yet)", ("18d1", "9302"): "USB Coral"}

HOT_C = 80.0  # where a Pi 4 or 5 starts throttling (85 C is the hard limit)
POWER_FIX = "use the official power supply (5.1 V 3 A for a Pi 4, 5.1 V 5 A for a Pi 5) and its cable"
COOLING_FIX = "cool the board: a heatsink or a fan (the Pi 5 Active Cooler), and air around the case"


# 9. Coral Edge TPU -----------------------------------------------------------------------------------------


def coral_devices(usb_devices: str = USB_DEVICES, dev: str = "/dev") -> list[str]:
    found = []
    for device in sorted(glob.glob(f"{usb_devices}/*")):
        vendor, product = board.read_text(f"{device}/idVendor") or "", board.read_text(f"{device}/idProduct") or ""
        if (vendor, product) in CORAL_USB_IDS:
            found.append(f"{CORAL_USB_IDS[vendor, product]} {vendor}:{product} at {Path(device).name}")
    found += [f"PCIe Coral {node}" for node in sorted(glob.glob(f"{dev}/apex_*"))]
    return found


def check_coral(library: bool, devices: Sequence[str], wanted: bool = False, fallback: bool = False) -> Check:
    name = "coral"
    if library and devices:
        return Check(name, "ok", f"libedgetpu.so.1 and {', '.join(devices)}")
    # Without delegate: edgetpu in the config a missing piece is only a warning; with it, the run fails
    # (exit 5) unless a fallback model runs on the CPU instead.
    missing: Verdict = "fail" if wanted and not fallback else "warn"
    if devices:
        return Check(name, missing, f"{', '.join(devices)} but no libedgetpu.so.1", EDGETPU_INSTALL_HINT)
    if library:
        return Check(name, missing, "libedgetpu.so.1 but no Coral device",
                     "plug the USB Coral into a USB 3 port (lsusb shows 1a6e:089a or 18d1:9302), or for a PCIe "
                     "Coral install the gasket driver (ls /dev/apex_0)")
    if wanted:
        return Check(name, missing, "model.delegate is edgetpu but there is neither libedgetpu.so.1 nor a Coral"
                     + (" (the fallback model runs on the CPU)" if fallback else ""), EDGETPU_INSTALL_HINT)
    return Check(name, "skip", "no Coral and no libedgetpu (not needed: model.delegate is cpu)")


# 10. Board: governor, temperature, throttling ----------------------------------------------------------------


def read_throttled(path: str = board.FIRMWARE_THROTTLED, run: Runner = run_command) -> dict[str, bool] | None:
    """The firmware's flags from sysfs, else from vcgencmd through `run`; None off a Pi."""
    if board.read_text(path) is not None:
        return board.throttled_flags(path)
    done = run(["vcgencmd", "get_throttled"], timeout=2)
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", done.stdout) if done is not None else None
    return board.decode_throttled(int(match.group(1), 16)) if match else None


def check_board(governor: str | None, temperature: float | None, throttled: Mapping[str, bool] | None) -> Check:
    name = "board"
    parts: list[str] = []
    verdicts: list[Verdict] = []
    fixes: list[str] = []
    if throttled is None:
        parts.append("no throttling flags (not a Raspberry Pi)")
    else:
        now = [flag for flag in ("under_voltage", "frequency_capped", "throttled", "soft_temperature_limit")
               if throttled.get(flag)]
        since_boot = [flag.removesuffix("_occurred") for flag, on in throttled.items()
                      if flag.endswith("_occurred") and on and flag.removesuffix("_occurred") not in now]
        if now:
            verdicts.append("fail")
            parts.append("now: " + ", ".join(f.replace("_", " ") for f in now))
        if since_boot:
            verdicts.append("warn")
            parts.append("since boot: " + ", ".join(f.replace("_", " ") for f in since_boot))
        if not now and not since_boot:
            parts.append("never throttled since boot")
        if "under_voltage" in now + since_boot:
            fixes.append(POWER_FIX)
        if set(now + since_boot) - {"under_voltage"}:
            fixes.append(COOLING_FIX)
    if temperature is not None:
        parts.append(f"SoC {temperature:.1f} C")
        if temperature > HOT_C:
            verdicts.append("warn")
            fixes.append(COOLING_FIX)
    if governor is not None:
        parts.append(f"governor {governor}")
        if governor != "performance":
            verdicts.append("warn")
            fixes.append("only for benchmarks: echo performance | sudo tee "
                         "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor (the default is fine for running)")
    if throttled is None and temperature is None and governor is None:
        return Check(name, "skip", "no governor, temperature or throttling to read (not a Raspberry Pi?)")
    return Check(name, worst(verdicts) if verdicts else "ok", "; ".join(parts), joined(fixes))
