from pathlib import Path

from edge_infer.service.board import cpu_temperature_c, decode_throttled, throttled_flags


def test_decode_throttled_now_and_since_boot():
    flags = decode_throttled(0x50005)  # under-voltage and throttled now, and both since boot
    assert flags["under_voltage"] and flags["throttled"] and flags["under_voltage_occurred"]
    assert flags["throttled_occurred"] and not flags["frequency_capped"] and not flags["soft_temperature_limit"]
    assert not any(decode_throttled(0).values())


def test_temperature_from_sysfs_millidegrees(tmp_path: Path):
    (tmp_path / "temp").write_text("48312\n")
    assert cpu_temperature_c(str(tmp_path / "temp")) == 48.312
    assert cpu_temperature_c(str(tmp_path / "missing")) is None


def test_throttled_from_the_firmware_file(tmp_path: Path):
    (tmp_path / "get_throttled").write_text("50000\n")  # hex, as the Pi firmware driver writes it
    assert throttled_flags(str(tmp_path / "get_throttled"))["throttled_occurred"]
