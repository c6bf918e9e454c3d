"""What the board says about itself: its name, CPU governor, SoC temperature, the Pi firmware's throttling."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from ..values import BoardHealth

THERMAL_ZONE = "/sys/class/thermal/thermal_zone0/temp"
GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
FIRMWARE_THROTTLED = "/sys/devices/platform/soc/soc:firmware/get_throttled"

# Bits of `vcgencmd get_throttled`: 0-3 are the state now, 16-19 whether it happened since boot.
THROTTLE_BITS = {
    0: "under_voltage", 1: "frequency_capped", 2: "throttled", 3: "soft_temperature_limit",
    16: "under_voltage_occurred", 17: "frequency_capped_occurred", 18: "throttled_occurred",
    19: "soft_temperature_limit_occurred",
}


def decode_throttled(value: int) -> dict[str, bool]:
    return {name: bool(value >> bit & 1) for bit, name in THROTTLE_BITS.items()}


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip().rstrip("\x00")  # device-tree strings end in NUL
    except OSError:
        return None


def board_model() -> str:
    """The board name from the device tree (e.g. "Raspberry Pi 5 Model B Rev 1.0"), else the CPU model."""
    model = read_text("/proc/device-tree/model")
    if model:
        return model
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        if line.lower().startswith(("model name", "hardware")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_governor() -> str | None:
    return read_text(GOVERNOR)


def cpu_temperature_c(path: str = THERMAL_ZONE) -> float | None:
    try:
        return int(read_text(path) or "") / 1000.0  # the kernel reports millidegrees
    except ValueError:
        return None


def throttled_flags(path: str = FIRMWARE_THROTTLED) -> dict[str, bool] | None:
    """The Pi firmware's flags, from sysfs (newer kernels) or `vcgencmd get_throttled`; None off a Pi."""
    try:
        return decode_throttled(int(read_text(path) or "", 16))
    except ValueError:
        pass
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2).stdout
        return decode_throttled(int(out.strip().split("=")[1], 16))  # "throttled=0x50000"
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


def board_health() -> BoardHealth:
    return BoardHealth(cpu_temperature_c(), throttled_flags())
