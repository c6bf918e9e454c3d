"""Checks of the hardware around the CPU: the Coral, and the board's governor, temperature and power."""

from __future__ import annotations

import glob
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...models.runtime import EDGETPU_INSTALL_HINT
from .. import board
from .report import SERVICE, Check, Runner, Verdict, joined, run_command, worst

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


def read_throttled(root: str = "/", run: Runner = run_command) -> dict[str, bool] | None:
    """The firmware's flags from sysfs under `root` (hwmon and get_throttled, see service.board), else from
    vcgencmd through `run`; None off a Pi."""
    def vcgencmd() -> str | None:
        done = run(["vcgencmd", "get_throttled"], timeout=2)
        return done.stdout if done is not None else None

    return board.throttled_flags(root, vcgencmd)


def read_service_throttling(run: Runner = run_command) -> dict[str, int] | None:
    """The running service's throttle counts, from the STATUS it gives systemd (SystemdNotifier; sd_notify(3)
    STATUS=, which systemd keeps as the unit's StatusText property: org.freedesktop.systemd1(5)); None when it
    does not run. A running service whose STATUS has none has seen none."""
    done = run(["systemctl", "show", SERVICE, "--property=ActiveState", "--property=StatusText"], timeout=10)
    if done is None or done.status != 0:
        return None
    properties = dict(line.partition("=")[::2] for line in done.stdout.splitlines())
    if properties.get("ActiveState") != "active":
        return None
    return board.parse_events(properties.get("StatusText", "")) or dict.fromkeys(board.CONDITIONS, 0)


def check_board(governor: str | None, temperature: float | None, throttled: Mapping[str, bool] | None,
                service_throttling: Mapping[str, int] | None = None) -> Check:
    name = "board"
    parts: list[str] = []
    verdicts: list[Verdict] = []
    fixes: list[str] = []
    if throttled is None:
        parts.append("no throttling flags (not a Raspberry Pi)")
    else:
        now = [flag for flag in board.CONDITIONS if throttled.get(flag)]
        # Not "since boot": raspberrypi-hwmon clears these bits at its 2 s poll (see service.board); the past is
        # only known to the service, which counts what it saw since it started.
        recent = [flag.removesuffix("_occurred") for flag, on in throttled.items()
                  if flag.endswith("_occurred") and on and flag.removesuffix("_occurred") not in now]
        counted = [flag for flag, n in (service_throttling or {}).items() if n]
        if now:
            verdicts.append("fail")
            parts.append("now: " + ", ".join(f.replace("_", " ") for f in now))
        if recent:
            verdicts.append("warn")
            parts.append("in the last seconds: " + ", ".join(f.replace("_", " ") for f in recent))
        if not now and not recent:
            parts.append("not throttled now")
        if service_throttling is not None:
            if counted:
                verdicts.append("warn")
            parts.append(f"{board.SINCE_START}: {board.describe_events(service_throttling)}")
        if "under_voltage" in now + recent + counted:
            fixes.append(POWER_FIX)
        if set(now + recent + counted) - {"under_voltage"}:
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
