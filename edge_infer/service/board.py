"""What the board says about itself: its name, CPU governor, SoC temperature, the Pi firmware's throttling.

The throttling flags come from the kernel, read as raspberrypi/linux has them:
- drivers/hwmon/raspberrypi-hwmon.c (rpi_firmware_get_throttled, get_values_poll) asks the firmware every 2 s,
  asking it to clear the sticky "occurred" bits each time, and exposes under-voltage as in0_lcrit_alarm of the
  hwmon device named "rpi_volt"; drivers/firmware/raspberrypi.c (get_throttled_show) warns that its own
  get_throttled file is "deprecated, use hwmon sysfs instead". So under-voltage comes from hwmon.
- hwmon has nothing for the other conditions (frequency capped, throttled, soft temperature limit): they come
  from get_throttled, which shows the value that 2 s poll read (rpi_firmware_property keeps it). Its
  "occurred" bits therefore mean "since the previous poll", never "since boot": whether the board throttled
  earlier is only known to a process that kept reading, so the run counts the events it saw (ThrottleCounter).
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import platform
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from ..values import BoardHealth

log = logging.getLogger(__name__)

THERMAL_ZONE = "/sys/class/thermal/thermal_zone0/temp"
GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
# Relative to a root ("/" on the machine). The firmware's platform device is named after its device-tree path
# (drivers/of/platform.c, of_device_make_bus_id): soc/soc:firmware on a Pi 4 and earlier, and
# soc@107c000000/soc@107c000000:firmware on a Pi 5, whose firmware node sits under &soc
# (arch/arm64/boot/dts/broadcom/bcm2712-rpi.dtsi), so one fixed path cannot find both.
FIRMWARE_THROTTLED = "sys/devices/platform/soc*/*:firmware/get_throttled"
HWMON_DEVICES = "sys/class/hwmon/hwmon*"
HWMON_NAME = "rpi_volt"  # raspberrypi-hwmon.c, rpi_hwmon_probe: devm_hwmon_device_register_with_info(dev, "rpi_volt")

# Bits of `vcgencmd get_throttled` (the Raspberry Pi documentation's "vcgencmd" page, get_throttled's table; the
# same word raspberrypi-hwmon.c reads): 0-3 are the state now, 16-19 whether it happened since last cleared.
THROTTLE_BITS = {
    0: "under_voltage", 1: "frequency_capped", 2: "throttled", 3: "soft_temperature_limit",
    16: "under_voltage_occurred", 17: "frequency_capped_occurred", 18: "throttled_occurred",
    19: "soft_temperature_limit_occurred",
}
CONDITIONS = tuple(THROTTLE_BITS[bit] for bit in range(4))
SINCE_START = "since the service started"


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


# The board's devices do not come and go while it runs: each is looked up once per root, not at every reading
# (the service reads the board every 2 s, on the inference loop's thread).
@functools.cache
def firmware_throttled_file(root: str = "/") -> str | None:
    """The firmware driver's get_throttled under `root`, on any Pi; None where there is none."""
    found = sorted(glob.glob(os.path.join(root, FIRMWARE_THROTTLED)))
    return found[0] if found else None


@functools.cache
def hwmon_volt_device(root: str = "/") -> str | None:
    """raspberrypi-hwmon's device under `root` (named HWMON_NAME), None without it."""
    return next((device for device in sorted(glob.glob(os.path.join(root, HWMON_DEVICES)))
                 if read_text(os.path.join(device, "name")) == HWMON_NAME), None)


def undervoltage_alarm(root: str = "/") -> bool | None:
    """raspberrypi-hwmon's in0_lcrit_alarm, None without it: the sticky under-voltage bit (16) of the firmware's
    last 2 s poll (rpi_read), i.e. under-voltage during the 2 s before it."""
    device = hwmon_volt_device(root)
    alarm = read_text(os.path.join(device, "in0_lcrit_alarm")) if device is not None else None
    return alarm == "1" if alarm in ("0", "1") else None


@functools.cache
def vcgencmd_path() -> str | None:
    return shutil.which("vcgencmd")


def vcgencmd_throttled() -> str | None:
    """`vcgencmd get_throttled`'s output (raspberrypi/utils vcgencmd/vcgencmd.c: "throttled=0x..."), or None where
    there is no vcgencmd (looked up once: no fork for nothing)."""
    if vcgencmd_path() is None:
        return None
    try:
        return subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def throttled_flags(root: str = "/", vcgencmd: Callable[[], str | None] | None = None) -> dict[str, bool] | None:
    """The Pi firmware's flags, None off a Pi: under-voltage from hwmon where it is, the rest from get_throttled,
    else from `vcgencmd` (by default `vcgencmd get_throttled` itself, asked only about the machine: `root` "/")."""
    file = firmware_throttled_file(root)
    try:
        flags = decode_throttled(int(read_text(file) or "", 16)) if file else None
    except ValueError:
        flags = None
    if vcgencmd is None and root == "/":
        vcgencmd = vcgencmd_throttled
    if flags is None and vcgencmd is not None:
        found = re.search(r"throttled=(0x[0-9a-fA-F]+)", vcgencmd() or "")  # "throttled=0x50000"
        flags = decode_throttled(int(found.group(1), 16)) if found else None
    alarm = undervoltage_alarm(root)
    if alarm is not None:
        flags = {**(flags or {}), "under_voltage": alarm}
    return flags


class ThrottleCounter:
    """How many times each condition began, in the readings seen by this process (the service, under systemd).

    A condition is seen when a reading has it now or its "occurred" bit (set since the firmware's previous
    2 s poll); it begins again after a reading without it. Readings further apart than 2 s can miss a short
    episode, so the service reads the board every 2 s (SystemdNotifier) besides each status.
    """

    def __init__(self) -> None:
        # Held by board_health over reading the flags and observing them: readers on several threads (the
        # notifier, the statuses) must observe in the order they read, or a stale reading counts an event twice.
        self.reading = threading.Lock()
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(CONDITIONS, 0)
        self._seen: frozenset[str] = frozenset()

    def observe(self, flags: Mapping[str, bool]) -> list[str]:
        """Counts what began since the last reading; returns those conditions."""
        seen = frozenset(c for c in CONDITIONS if flags.get(c) or flags.get(f"{c}_occurred"))
        with self._lock:
            began = [c for c in CONDITIONS if c in seen and c not in self._seen]
            for condition in began:
                self._counts[condition] += 1
            self._seen = seen
        return began

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


SERVICE_THROTTLING = ThrottleCounter()  # this process's: under systemd, since the service started


def describe_events(counts: Mapping[str, int]) -> str:
    """"under voltage 2, throttled 1", or "none": in the service's systemd STATUS, which doctor reads back."""
    return ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in counts.items() if n) or "none"


def parse_events(text: str) -> dict[str, int] | None:
    """The counts in a systemd STATUS written with describe_events after "since the service started: "; None
    when it has none."""
    found = re.search(rf"{SINCE_START}: ([a-z0-9 ,]+)", text)
    if found is None:
        return None
    counts = dict.fromkeys(CONDITIONS, 0)
    for item in found.group(1).split(","):
        name, _, number = item.strip().rpartition(" ")
        if name.replace(" ", "_") in counts and number.isdigit():
            counts[name.replace(" ", "_")] = int(number)
    return counts


def board_health(root: str = "/", counter: ThrottleCounter = SERVICE_THROTTLING) -> BoardHealth:
    """The SoC temperature and the throttling flags now; the "occurred" flags and counts are `counter`'s, since the
    service started (the firmware's own are cleared every 2 s, see above). A new event is logged as a warning."""
    temperature = cpu_temperature_c(os.path.join(root, THERMAL_ZONE.lstrip("/")))
    with counter.reading:
        flags = throttled_flags(root)
        began = counter.observe(flags) if flags is not None else []
    if flags is None:
        return BoardHealth(temperature, None)
    for condition in began:
        log.warning("the board reports %s (%d %s)", condition.replace("_", " "), counter.counts()[condition],
                    SINCE_START)
    counts = counter.counts()
    since_start = {c: bool(flags.get(c)) for c in CONDITIONS} | {f"{c}_occurred": counts[c] > 0 for c in CONDITIONS}
    return BoardHealth(temperature, since_start, counts)
