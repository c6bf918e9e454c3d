"""What the board says about itself: SoC temperature and the Raspberry Pi firmware's throttling flags."""

from __future__ import annotations

import subprocess
from pathlib import Path

THERMAL_ZONE = "/sys/class/thermal/thermal_zone0/temp"
FIRMWARE_THROTTLED = "/sys/devices/platform/soc/soc:firmware/get_throttled"

# Bits of `vcgencmd get_throttled`: 0-3 are the state now, 16-19 whether it happened since boot.
THROTTLE_BITS = {
    0: "under_voltage", 1: "frequency_capped", 2: "throttled", 3: "soft_temperature_limit",
    16: "under_voltage_occurred", 17: "frequency_capped_occurred", 18: "throttled_occurred",
    19: "soft_temperature_limit_occurred",
}


def decode_throttled(value: int) -> dict[str, bool]:
    return {name: bool(value >> bit & 1) for bit, name in THROTTLE_BITS.items()}


def cpu_temperature_c(path: str = THERMAL_ZONE) -> float | None:
    try:
        return int(Path(path).read_text().strip()) / 1000.0  # the kernel reports millidegrees
    except (OSError, ValueError):
        return None


def throttled_flags(path: str = FIRMWARE_THROTTLED) -> dict[str, bool] | None:
    """The Pi firmware's flags, from sysfs (newer kernels) or `vcgencmd get_throttled`; None off a Pi."""
    try:
        return decode_throttled(int(Path(path).read_text().strip(), 16))
    except (OSError, ValueError):
        pass
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2).stdout
        return decode_throttled(int(out.strip().split("=")[1], 16))  # "throttled=0x50000"
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


def board_health() -> dict[str, object]:
    health: dict[str, object] = {}
    temperature = cpu_temperature_c()
    if temperature is not None:
        health["cpu_temp_c"] = round(temperature, 1)
    flags = throttled_flags()
    if flags is not None:
        health["throttled"] = flags
    return health
