"""The board's temperature and the Pi firmware's throttling, read from sysfs trees laid out as a Pi 4's and a Pi 5's
kernel lays them out (raspberrypi/linux: drivers/firmware/raspberrypi.c, drivers/hwmon/raspberrypi-hwmon.c)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_infer.service.board import (
    ThrottleCounter,
    board_health,
    cpu_temperature_c,
    decode_throttled,
    describe_events,
    firmware_throttled_file,
    parse_events,
    throttled_flags,
)

# The firmware's platform device, named after its device-tree path (of_device_make_bus_id).
PI4_FIRMWARE = "sys/devices/platform/soc/soc:firmware"
PI5_FIRMWARE = "sys/devices/platform/soc@107c000000/soc@107c000000:firmware"


def sysfs(root: Path, firmware: str, throttled: str | None, alarm: str | None = None) -> Path:
    """A sysfs tree: the firmware's get_throttled (hex, as get_throttled_show prints it), and raspberrypi-hwmon's
    device (a child of the firmware's, linked from /sys/class/hwmon as the kernel does) when `alarm` is given."""
    device = root / firmware
    device.mkdir(parents=True)
    if throttled is not None:
        (device / "get_throttled").write_text(throttled + "\n")
    hwmon_class = root / "sys/class/hwmon"
    hwmon_class.mkdir(parents=True)
    (hwmon_class / "hwmon0").mkdir()  # the CPU's thermal sensor comes first on a Pi
    (hwmon_class / "hwmon0/name").write_text("cpu_thermal\n")
    if alarm is not None:
        hwmon = device / "raspberrypi-hwmon/hwmon/hwmon1"
        hwmon.mkdir(parents=True)
        (hwmon / "name").write_text("rpi_volt\n")
        (hwmon / "in0_lcrit_alarm").write_text(alarm + "\n")
        (hwmon_class / "hwmon1").symlink_to(hwmon)
    (root / "sys/class/thermal/thermal_zone0").mkdir(parents=True)
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("48312\n")
    return root


def test_decode_throttled_now_and_since_the_last_clear():
    flags = decode_throttled(0x50005)  # under-voltage and throttled now, and both since the bits were cleared
    assert flags["under_voltage"] and flags["throttled"] and flags["under_voltage_occurred"]
    assert flags["throttled_occurred"] and not flags["frequency_capped"] and not flags["soft_temperature_limit"]
    assert not any(decode_throttled(0).values())


def test_temperature_from_sysfs_millidegrees(tmp_path: Path):
    (tmp_path / "temp").write_text("48312\n")
    assert cpu_temperature_c(str(tmp_path / "temp")) == 48.312
    assert cpu_temperature_c(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("firmware", [PI4_FIRMWARE, PI5_FIRMWARE], ids=["pi4", "pi5"])
def test_the_firmware_file_is_found_on_a_pi_4_and_a_pi_5(tmp_path: Path, firmware: str):
    root = sysfs(tmp_path, firmware, "40004")  # throttled now and since the last poll
    assert firmware_throttled_file(str(root)) == str(root / firmware / "get_throttled")
    flags = throttled_flags(str(root))
    assert flags is not None and flags["throttled"] and flags["throttled_occurred"] and not flags["under_voltage"]


@pytest.mark.parametrize("firmware", [PI4_FIRMWARE, PI5_FIRMWARE], ids=["pi4", "pi5"])
def test_under_voltage_comes_from_hwmon_where_it_is(tmp_path: Path, firmware: str):
    # The file says no under-voltage, hwmon's alarm says there is: hwmon wins (the file is deprecated).
    root = sysfs(tmp_path, firmware, "0", alarm="1")
    flags = throttled_flags(str(root))
    assert flags is not None and flags["under_voltage"] and not flags["throttled"]
    (root / "sys/class/hwmon/hwmon1/in0_lcrit_alarm").write_text("0\n")
    (root / firmware / "get_throttled").write_text("1\n")
    assert throttled_flags(str(root))["under_voltage"] is False  # type: ignore[index]


def test_hwmon_alone_gives_under_voltage_and_nothing_else(tmp_path: Path):
    root = sysfs(tmp_path, PI5_FIRMWARE, None, alarm="1")
    assert throttled_flags(str(root)) == {"under_voltage": True}


def test_off_a_pi_there_are_no_flags(tmp_path: Path):
    (tmp_path / "sys/devices/platform/serial8250").mkdir(parents=True)
    assert throttled_flags(str(tmp_path)) is None
    assert throttled_flags(str(tmp_path), vcgencmd=lambda: "throttled=0x4\n") == decode_throttled(4)
    health = board_health(str(tmp_path), ThrottleCounter())
    assert health.throttled is None and health.throttle_events is None and health.to_json_dict() == {}


def test_events_are_counted_each_time_a_condition_begins():
    counter = ThrottleCounter()
    readings = [0x0, 0x10000, 0x10000, 0x0, 0x1, 0x40000, 0x0, 0x0]  # under-voltage twice, throttling once
    began = [counter.observe(decode_throttled(value)) for value in readings]
    assert began == [[], ["under_voltage"], [], [], ["under_voltage"], ["throttled"], [], []]
    assert counter.counts() == {"under_voltage": 2, "frequency_capped": 0, "throttled": 1,
                                "soft_temperature_limit": 0}


def test_the_status_keeps_counts_since_the_service_started(tmp_path: Path, caplog):
    root = sysfs(tmp_path, PI5_FIRMWARE, "0", alarm="0")
    counter = ThrottleCounter()
    assert board_health(str(root), counter).to_json_dict() == {
        "cpu_temp_c": 48.3,
        "throttled": {"under_voltage": False, "frequency_capped": False, "throttled": False,
                      "soft_temperature_limit": False, "under_voltage_occurred": False,
                      "frequency_capped_occurred": False, "throttled_occurred": False,
                      "soft_temperature_limit_occurred": False},
        "throttle_events": {"under_voltage": 0, "frequency_capped": 0, "throttled": 0, "soft_temperature_limit": 0}}
    (root / "sys/class/hwmon/hwmon1/in0_lcrit_alarm").write_text("1\n")
    with caplog.at_level(logging.WARNING):
        board_health(str(root), counter)
    assert caplog.messages == ["the board reports under voltage (1 since the service started)"]
    # raspberrypi-hwmon's next poll cleared it: the firmware forgets, the service does not.
    (root / "sys/class/hwmon/hwmon1/in0_lcrit_alarm").write_text("0\n")
    health = board_health(str(root), counter)
    assert health.throttled is not None and health.throttle_events is not None
    assert not health.throttled["under_voltage"] and health.throttled["under_voltage_occurred"]
    assert health.throttle_events["under_voltage"] == 1


def test_the_counts_survive_the_trip_through_the_systemd_status():
    counts = {"under_voltage": 2, "frequency_capped": 0, "throttled": 1, "soft_temperature_limit": 0}
    text = f"classifying with m on cpu; throttling since the service started: {describe_events(counts)}"
    assert describe_events(counts) == "under voltage 2, throttled 1"
    assert parse_events(text) == counts
    assert parse_events("classifying with m on cpu") is None
