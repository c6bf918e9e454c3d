"""`edge-infer doctor`: every check's pass and fail/warn path against stand-ins for what this x86 box lacks
(a sysfs tree in tmp_path, a runner answering as dpkg/systemctl/vcgencmd would, the Picamera2 stand-in in
tests/fake_picamera2, a broker on loopback), and the real CLI end to end."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from conftest import REPO

from edge_infer import config as config_module
from edge_infer.config import load_config
from edge_infer.errors import RuntimeUnavailableError
from edge_infer.models.runtime import EDGETPU_INSTALL_HINT, Runtime, load_runtime
from edge_infer.service import doctor
from edge_infer.service.doctor import Check, CommandResult, Host, Report

FAKE_PICAMERA2 = REPO / "tests" / "fake_picamera2"
MODEL = "mobilenet_v1_0.25_128_quant"
ORDER = ["architecture", "python", "runtime", "numpy", "venv", "picamera2", "cameras", "groups", "coral", "hailo",
         "ai-camera", "board", "models", "config", "mqtt", "service"]


class FakeRunner:
    """Answers commands by the start of their command line; a command it does not know is not installed."""

    def __init__(self, answers: Mapping[str, CommandResult | None] | None = None) -> None:
        self.answers = dict(answers or {})
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], *, timeout: float = 10.0,
                 env: Mapping[str, str] | None = None) -> CommandResult | None:
        self.calls.append(list(argv))
        line = " ".join(argv)
        return next((answer for prefix, answer in self.answers.items() if line.startswith(prefix)), None)


def said(stdout: str = "", status: int = 0, stderr: str = "") -> CommandResult:
    return CommandResult(status, stdout, stderr)


def no_runtime() -> Runtime:
    raise RuntimeUnavailableError("no TFLite interpreter is installed: pip install ai-edge-litert")


def python_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FAKE_PICAMERA2")}
    return {**env, **extra}


def fake_picamera2_env(**settings: object) -> dict[str, str]:
    return python_env(PYTHONPATH=str(FAKE_PICAMERA2), FAKE_PICAMERA2=json.dumps(settings))


# 1. architecture


@pytest.mark.parametrize("arch", ["arm64", "amd64"])
def test_64bit_userland_is_ok(arch: str):
    check = doctor.check_architecture(FakeRunner({"dpkg --print-architecture": said(f"{arch}\n")}),
                                      machine=lambda: "aarch64")
    assert (check.verdict, check.fix) == ("ok", None)
    assert arch in check.detail


@pytest.mark.parametrize("arch", ["armhf", "armel", "i386"])
def test_32bit_userland_fails_even_on_a_64bit_kernel(arch: str):
    check = doctor.check_architecture(FakeRunner({"dpkg": said(f"{arch}\n")}), machine=lambda: "aarch64")
    assert check.verdict == "fail"
    assert check.fix == "LiteRT and OpenCV have no wheels for it: install the 64-bit Raspberry Pi OS"


def test_without_dpkg_the_kernel_is_asked_and_it_warns():
    runner = FakeRunner()
    check = doctor.check_architecture(runner, machine=lambda: "x86_64")
    assert check.verdict == "warn" and "x86_64" in check.detail
    assert runner.calls == [["dpkg", "--print-architecture"]]
    assert doctor.check_architecture(runner, machine=lambda: "armv7l").verdict == "fail"


def test_an_architecture_without_litert_wheels_warns():
    assert doctor.check_architecture(FakeRunner({"dpkg": said("riscv64\n")})).verdict == "warn"


# 2. Python


def test_python_in_the_wheel_range_is_ok():
    assert doctor.check_python((3, 11), no_runtime).verdict == "ok"
    assert doctor.check_python((3, 14), no_runtime).verdict == "ok"


def test_python_outside_the_wheel_range_fails():
    check = doctor.check_python((3, 9), load_runtime)  # too old even when something loads
    assert check.verdict == "fail" and "3.10-3.14" in check.detail and check.fix
    assert doctor.check_python((3, 15), no_runtime).verdict == "fail"


def test_a_newer_python_whose_runtime_loads_only_warns():
    check = doctor.check_python((3, 15), load_runtime)
    assert check.verdict == "warn" and "ai_edge_litert" in check.detail


# 3. runtime and XNNPACK


def test_the_runtime_creates_xnnpack_for_the_configured_model(models: Path):
    check = doctor.check_runtime(models / f"{MODEL}.tflite", env=python_env())
    assert check.verdict == "ok", check
    assert check.detail.startswith("ai_edge_litert ") and "XNNPACK on" in check.detail


def test_no_xnnpack_line_warns(models: Path):
    runner = FakeRunner({sys.executable: said(stderr="INFO: Initialized TensorFlow Lite runtime.\n")})
    check = doctor.check_runtime(models / f"{MODEL}.tflite", load_runtime, runner)
    assert check.verdict == "warn" and "no XNNPACK delegate" in check.detail
    assert runner.calls[0][-1] == str(models / f"{MODEL}.tflite")


def test_a_model_that_does_not_load_warns_with_the_reason(tmp_path: Path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\0\0\0\0TFL3" + b"\xff" * 64)
    check = doctor.check_runtime(broken, env=python_env())
    assert check.verdict == "warn" and "could not load broken.tflite" in check.detail


def test_no_runtime_fails_and_without_a_model_xnnpack_is_not_checked():
    check = doctor.check_runtime(None, no_runtime)
    assert check.verdict == "fail" and check.fix == "pip install ai-edge-litert (in the venv)"
    runner = FakeRunner()
    check = doctor.check_runtime(None, load_runtime, runner)
    assert check.verdict == "ok" and "not checked" in check.detail and runner.calls == []


# 4. numpy


def test_apt_numpy_1_under_numpy_2_fails_with_the_pin():
    check = doctor.check_numpy("2.4.6", "1.24.2", shares_system_packages=True, python="/opt/venv/bin/python")
    assert check.verdict == "fail" and "numpy.dtype size changed" in check.detail
    assert check.fix is not None and check.fix.startswith("/opt/venv/bin/python -m pip install 'numpy==1.24.2'")


def test_apt_numpy_1_is_only_a_warning_while_the_venv_cannot_see_apt_packages():
    assert doctor.check_numpy("2.4.6", "1.24.2", shares_system_packages=False).verdict == "warn"


@pytest.mark.parametrize(("own", "apt"), [("2.4.6", None), ("1.24.2", "1.24.2"), ("2.4.6", "2.2.4"),
                                          ("1.26.4", "2.2.4")])
def test_numpy_that_cannot_clash_is_ok(own: str, apt: str | None):
    assert doctor.check_numpy(own, apt, shares_system_packages=True).verdict == "ok"


def test_apt_numpy_is_asked_of_the_system_interpreter_without_user_site():
    runner = FakeRunner({"/usr/bin/python3 -s -c": said("1.24.2\n")})
    assert doctor.apt_numpy_version(runner) == "1.24.2"
    failing = FakeRunner({"/usr/bin/python3": said(status=1, stderr="ModuleNotFoundError: No module named 'numpy'")})
    assert doctor.apt_numpy_version(failing) is None
    assert doctor.apt_numpy_version(FakeRunner()) is None


# 5. venv


def venv(tmp_path: Path, include: str | None) -> str:
    prefix = tmp_path / "venv"
    prefix.mkdir()
    if include is not None:
        (prefix / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = {include}\n")
    return str(prefix)


def apt_packages(tmp_path: Path, *packages: str) -> tuple[str]:
    dist = tmp_path / "dist-packages"
    for package in packages:
        (dist / package).mkdir(parents=True)
    return (str(dist),)


def test_a_venv_without_system_site_packages_fails_when_apt_has_picamera2(tmp_path: Path):
    prefix = venv(tmp_path, "false")
    check = doctor.check_venv(prefix, apt_packages(tmp_path, "picamera2"))
    assert check.verdict == "fail" and "Picamera2" in check.detail
    assert check.fix is not None and f"python3 -m venv --system-site-packages {prefix}" in check.fix
    assert not doctor.shares_system_packages(prefix)


def test_a_venv_with_system_site_packages_is_ok(tmp_path: Path):
    prefix = venv(tmp_path, "true")
    assert doctor.check_venv(prefix, apt_packages(tmp_path, "picamera2")).verdict == "ok"
    assert doctor.shares_system_packages(prefix)


def test_a_venv_is_ok_without_apt_picamera2_and_no_venv_is_skipped(tmp_path: Path):
    assert doctor.check_venv(venv(tmp_path, "false"), apt_packages(tmp_path, "numpy")).verdict == "ok"
    not_a_venv = tmp_path / "usr"
    not_a_venv.mkdir()
    assert doctor.check_venv(str(not_a_venv), ()).verdict == "skip"
    assert doctor.shares_system_packages(str(not_a_venv))  # the system interpreter sees apt's packages


# 6. Picamera2


def test_picamera2_that_imports_is_ok():
    check = doctor.check_picamera2(env=fake_picamera2_env(cameras=[]))
    assert (check.verdict, check.detail) == ("ok", "import picamera2 works")


def test_picamera2_built_on_numpy_1_fails_with_the_numpy_fix():
    error = "numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, got 88"
    check = doctor.check_picamera2(env=fake_picamera2_env(import_error=error), apt_numpy="1.24.2")
    assert check.verdict == "fail" and check.detail == f"import picamera2 fails: ValueError: {error}"
    assert check.fix is not None and "'numpy==1.24.2'" in check.fix


def test_picamera2_failing_otherwise_fails_with_its_error_line():
    check = doctor.check_picamera2(env=fake_picamera2_env(import_error="libcamera.so.0.3: cannot open"))
    assert check.verdict == "fail" and check.detail.endswith("libcamera.so.0.3: cannot open")
    assert "python3-picamera2" in (check.fix or "")


def test_picamera2_missing_is_skipped_off_a_pi_and_warned_about_on_one(tmp_path: Path):
    assert doctor.check_picamera2(env=python_env(), is_pi=False).verdict == "skip"
    check = doctor.check_picamera2(env=python_env(), is_pi=True)
    assert check.verdict == "warn" and "sudo apt install python3-picamera2" in (check.fix or "")
    (tmp_path / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    (tmp_path / "other").write_bytes(b"Radxa ROCK 5B\x00")
    assert doctor.on_raspberry_pi(str(tmp_path / "model"))
    assert not doctor.on_raspberry_pi(str(tmp_path / "other"))
    assert not doctor.on_raspberry_pi(str(tmp_path / "missing"))


# 7. cameras


def video_nodes(tmp_path: Path, names: Mapping[str, str]) -> tuple[str, str]:
    dev, sysfs = tmp_path / "dev", tmp_path / "video4linux"
    dev.mkdir()
    for node, name in names.items():
        (dev / node).touch()
        (sysfs / node).mkdir(parents=True)
        (sysfs / node / "name").write_text(name + "\n")
    return str(dev), str(sysfs)


def test_v4l2_cameras_are_listed_by_name_without_the_pis_codec_nodes(tmp_path: Path):
    dev, sysfs = video_nodes(tmp_path, {"video0": "HD Pro Webcam C920", "video10": "bcm2835-codec-decode",
                                        "video19": "unicam-image"})
    cameras, skipped = doctor.v4l2_cameras(dev, sysfs)
    assert cameras == [f"{dev}/video0 (HD Pro Webcam C920)"] and skipped == 2
    check = doctor.check_cameras(cameras, skipped, None)
    assert check.verdict == "ok" and "HD Pro Webcam C920" in check.detail


def test_libcamera_cameras_are_listed_through_picamera2():
    env = fake_picamera2_env(cameras=[{"Model": "imx708", "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a"}])
    listed = doctor.libcamera_cameras(env=env)
    assert listed == ["imx708 (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)"]
    assert doctor.check_cameras([], 0, listed).verdict == "ok"


def test_no_camera_warns(tmp_path: Path):
    dev, sysfs = video_nodes(tmp_path, {"video10": "bcm2835-codec-decode"})
    cameras, skipped = doctor.v4l2_cameras(dev, sysfs)
    check = doctor.check_cameras(cameras, skipped, [])
    assert check.verdict == "warn" and check.detail.startswith("no camera found") and check.fix
    assert doctor.check_cameras([], 0, "RuntimeError: no cameras available").verdict == "warn"


# 8. groups


def lookup(table: Mapping[str, set[str]]):
    return lambda user: frozenset(table[user]) if user in table else None


SYSTEM_GROUPS = frozenset({"video", "plugdev", "users"})


def test_users_in_video_and_plugdev_are_ok():
    table = {"alice": {"alice", "video", "plugdev"}, "edge-infer": {"edge-infer", "video", "plugdev"}}
    check = doctor.check_groups("alice", lookup(table), lambda: SYSTEM_GROUPS)
    assert (check.verdict, check.fix) == ("ok", None)
    assert "alice: video, plugdev" in check.detail and "edge-infer: video, plugdev" in check.detail


def test_a_missing_group_warns_with_usermod_for_each_user():
    table = {"alice": {"alice", "video"}, "edge-infer": {"edge-infer"}}
    check = doctor.check_groups("alice", lookup(table), lambda: SYSTEM_GROUPS)
    assert check.verdict == "warn"
    assert check.fix == ("sudo usermod -a -G plugdev alice, then log out and in again; sudo usermod -a -G "
                         "video,plugdev edge-infer, then sudo systemctl restart edge-infer")


def test_groups_the_system_lacks_are_not_asked_for_and_root_needs_none():
    check = doctor.check_groups("alice", lookup({"alice": {"video"}}), lambda: frozenset({"video"}))
    assert check.verdict == "ok" and check.detail == "alice: video"
    assert doctor.check_groups("root", lookup({"root": {"root"}}), lambda: SYSTEM_GROUPS).verdict == "ok"


def test_under_sudo_the_groups_of_the_user_who_ran_it_are_checked():
    assert doctor.invoking_user({"SUDO_USER": "alice"}, uid=0) == "alice"
    assert doctor.invoking_user({}, uid=0) == "root"


# 9. Coral


def usb_device(root: Path, name: str, vendor: str, product: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "idVendor").write_text(vendor + "\n")
    (root / name / "idProduct").write_text(product + "\n")


def test_coral_devices_by_usb_id_and_apex_node(tmp_path: Path):
    usb, dev = tmp_path / "usb", tmp_path / "dev"
    usb_device(usb, "2-1", "18d1", "9302")
    usb_device(usb, "2-2", "1a6e", "089a")
    usb_device(usb, "1-1", "046d", "082d")  # a webcam
    dev.mkdir()
    (dev / "apex_0").touch()
    found = doctor.coral_devices(str(usb), str(dev))
    assert found == ["USB Coral 18d1:9302 at 2-1", "USB Coral (firmware not loaded yet) 1a6e:089a at 2-2",
                     f"PCIe Coral {dev}/apex_0"]
    assert doctor.check_coral(True, found).verdict == "ok"


def test_coral_with_one_half_missing_warns():
    check = doctor.check_coral(False, ["USB Coral 18d1:9302 at 2-1"])
    assert (check.verdict, check.fix) == ("warn", EDGETPU_INSTALL_HINT)
    check = doctor.check_coral(True, [])
    assert check.verdict == "warn" and "lsusb" in (check.fix or "")


def test_no_coral_is_skipped_unless_the_config_wants_one():
    assert doctor.check_coral(False, []).verdict == "skip"
    assert doctor.check_coral(False, [], wanted=True).verdict == "fail"
    assert doctor.check_coral(False, [], wanted=True, fallback=True).verdict == "warn"


# 10. board


def board_files(tmp_path: Path, governor: str, millidegrees: int, throttled: str) -> tuple[str, str, str]:
    """The governor and temperature files, and a root whose sysfs has a Pi 5's get_throttled (service.board)."""
    firmware = tmp_path / "sys/devices/platform/soc@107c000000/soc@107c000000:firmware"
    firmware.mkdir(parents=True, exist_ok=True)
    paths = tmp_path / "governor", tmp_path / "temp", firmware / "get_throttled"
    for path, text in zip(paths, (governor, str(millidegrees), throttled), strict=True):
        path.write_text(text + "\n")
    return str(paths[0]), str(paths[1]), str(tmp_path)


def board_check(paths: tuple[str, str, str], runner: FakeRunner | None = None) -> Check:
    governor, thermal, root = paths
    runner = runner or FakeRunner()
    return doctor.check_board(doctor.board.read_text(governor), doctor.board.cpu_temperature_c(thermal),
                              doctor.read_throttled(root, runner), doctor.read_service_throttling(runner))


def service(status_text: str, active: str = "active") -> FakeRunner:
    """systemctl as it answers for the running service, whose STATUS is `status_text`."""
    return FakeRunner({"systemctl show edge-infer": said(f"ActiveState={active}\nStatusText={status_text}\n")})


def test_a_cool_unthrottled_board_on_performance_is_ok(tmp_path: Path):
    check = board_check(board_files(tmp_path, "performance", 48312, "0"))
    assert (check.verdict, check.fix) == ("ok", None)
    # Nothing about the time before now: raspberrypi-hwmon clears the firmware's "occurred" bits every 2 s.
    assert check.detail == "not throttled now; SoC 48.3 C; governor performance"


def test_throttling_now_fails_and_under_voltage_names_the_power_supply(tmp_path: Path):
    check = board_check(board_files(tmp_path, "ondemand", 60000, "50005"))  # a failure outweighs a warning
    assert check.verdict == "fail" and "now: under voltage, throttled" in check.detail
    assert check.fix is not None and doctor.POWER_FIX in check.fix and doctor.COOLING_FIX in check.fix


def test_the_occurred_bits_are_recent_not_since_boot(tmp_path: Path):
    check = board_check(board_files(tmp_path, "performance", 60000, "50000"))
    assert check.verdict == "warn" and "in the last seconds: under voltage, throttled" in check.detail
    assert "boot" not in check.detail
    assert check.fix == doctor.POWER_FIX + "; " + doctor.COOLING_FIX


def test_the_running_service_says_what_it_counted_since_it_started(tmp_path: Path):
    files = board_files(tmp_path, "performance", 48312, "0")
    counted = board_check(files, service("classifying with m on cpu; throttling since the service started: "
                                         "under voltage 2"))
    assert counted.verdict == "warn" and counted.fix == doctor.POWER_FIX
    assert counted.detail == ("not throttled now; since the service started: under voltage 2; SoC 48.3 C; "
                              "governor performance")
    quiet = board_check(files, service("classifying with m on cpu"))
    assert quiet.verdict == "ok" and "since the service started: none" in quiet.detail
    stopped = board_check(files, service("classifying with m on cpu; throttling since the service started: "
                                         "throttled 1", active="inactive"))
    assert stopped.verdict == "ok" and "since the service started" not in stopped.detail


def test_a_hot_board_and_a_governor_other_than_performance_warn(tmp_path: Path):
    hot = board_check(board_files(tmp_path, "performance", 83500, "0"))
    assert hot.verdict == "warn" and hot.fix == doctor.COOLING_FIX
    ondemand = board_check(board_files(tmp_path, "ondemand", 50000, "0"))
    assert ondemand.verdict == "warn" and "benchmarks" in (ondemand.fix or "")


def test_without_sysfs_the_flags_come_from_vcgencmd_and_off_a_pi_it_skips(tmp_path: Path):
    missing = (str(tmp_path / "governor"), str(tmp_path / "temp"), str(tmp_path))
    runner = FakeRunner({"vcgencmd get_throttled": said("throttled=0x4\n")})
    check = board_check(missing, runner)
    assert check.verdict == "fail" and "now: throttled" in check.detail
    assert board_check(missing).verdict == "skip"


# 11. models


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model directory as the only one searched: no $EDGE_INFER_MODELS, a home of its own."""
    monkeypatch.delenv("EDGE_INFER_MODELS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    directory = tmp_path / "models"
    directory.mkdir()
    return directory


def test_models_matching_the_zoo_and_unknown_ones_are_ok(models: Path, model_dir: Path):
    shutil.copy(models / f"{MODEL}.tflite", model_dir)
    shutil.copy(models / f"{MODEL}.tflite", model_dir / "my_birds.tflite")
    check = doctor.check_models([MODEL], str(model_dir))
    assert (check.verdict, check.fix) == ("ok", None)
    assert f"model {MODEL} is {model_dir / MODEL}.tflite" in check.detail
    assert "2 files checked: 1 match the zoo's sha256, 1 not in the zoo (my_birds.tflite)" in check.detail


def test_a_damaged_zoo_model_fails_with_the_pull_command(models: Path, model_dir: Path):
    content = bytearray((models / f"{MODEL}.tflite").read_bytes())
    content[len(content) // 2] ^= 0x10
    (model_dir / f"{MODEL}.tflite").write_bytes(bytes(content))
    (model_dir / "empty.tflite").write_bytes(b"")
    check = doctor.check_models([], str(model_dir))
    assert check.verdict == "fail"
    assert "is not the zoo's cb273c23ee76" in check.detail and "empty.tflite: not a TFLite model" in check.detail
    assert check.fix is not None and f"re-download it (edge-infer models pull {MODEL})" in check.fix


def test_a_configured_model_that_is_missing(model_dir: Path):
    check = doctor.check_models([str(model_dir / "gone.tflite")], str(model_dir))
    assert check.verdict == "fail" and "does not exist" in check.detail
    zoo = doctor.check_models(["mobilenet_v1_0.5_160_quant"], str(model_dir))  # the first run pulls it
    assert zoo.verdict == "warn" and zoo.fix == "edge-infer models pull mobilenet_v1_0.5_160_quant"


def test_the_cpu_model_of_an_edge_tpu_config_is_its_fallback(models: Path, tmp_path: Path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"model:\n  path: {models / MODEL}_edgetpu.tflite\n  delegate: edgetpu\n"
                           f"  fallback_model: {models / MODEL}.tflite\n")
    assert doctor.cpu_model(load_config(str(config_file))) == models / f"{MODEL}.tflite"
    config_file.write_text(f"model:\n  path: {models / MODEL}_edgetpu.tflite\n")
    assert doctor.cpu_model(load_config(str(config_file))) is None


# 12. config


def test_a_valid_config_is_ok_and_names_its_file(tmp_path: Path):
    (tmp_path / "config.yaml").write_text("outputs: [stdout]\n")
    check = doctor.check_config(doctor.read_config(str(tmp_path / "config.yaml")))
    assert check.verdict == "ok" and check.detail == f"{tmp_path / 'config.yaml'} is valid"


def test_a_broken_config_fails_with_the_error(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("model:\n  num_thread: 2\n")
    state = doctor.read_config(str(tmp_path / "bad.yaml"))
    check = doctor.check_config(state)
    assert state.config is None and check.verdict == "fail"
    assert check.detail.startswith(f"{tmp_path / 'bad.yaml'}:2: model.num_thread: unknown key")
    assert "--check-config --config" in (check.fix or "")


def test_no_config_file_means_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGE_INFER_CONFIG", raising=False)
    monkeypatch.setattr(config_module, "config_search", lambda: ("config.yaml",))
    check = doctor.check_config(doctor.read_config(None))
    assert check.verdict == "ok" and check.detail.startswith("no config file")


# 13. MQTT


@contextlib.contextmanager
def loopback_broker(connack: bytes | None) -> Iterator[tuple[int, list[bytes]]]:
    """Takes one connection, reads the CONNECT, answers `connack` (None: never), keeps what the client sends."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    received: list[bytes] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            connection, _ = server.accept()
            with connection:
                connection.settimeout(3)
                received.append(connection.recv(1024))
                if connack is not None:
                    connection.sendall(connack)
                while data := connection.recv(1024):
                    received.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], received
    finally:
        thread.join(5)
        server.close()


def mqtt_config(tmp_path: Path, port: int, outputs: str = "[mqtt]"):
    (tmp_path / "config.yaml").write_text(f"outputs: {outputs}\nmqtt:\n  host: 127.0.0.1\n  port: {port}\n")
    return load_config(str(tmp_path / "config.yaml"))


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def test_a_broker_that_accepts_connect_is_ok(tmp_path: Path):
    with loopback_broker(b"\x20\x02\x00\x00") as (port, received):
        check = doctor.check_mqtt(mqtt_config(tmp_path, port))
    assert check.verdict == "ok" and check.detail == f"127.0.0.1:{port} answered CONNECT"
    assert received[0][0] == 0x10  # an MQTT CONNECT, not just a TCP connection
    assert b"edge-infer-doctor-" in received[0]  # never the service's client id: that would kick it off
    assert b"".join(received[1:]) == b"\xe0\x00"  # and a clean DISCONNECT


def test_a_broker_that_refuses_fails(tmp_path: Path):
    with loopback_broker(b"\x20\x02\x00\x05") as (port, _):  # 5: not authorized
        check = doctor.check_mqtt(mqtt_config(tmp_path, port))
    assert check.verdict == "fail" and "refused" in check.detail and check.fix


def test_no_broker_or_a_silent_one_fails(tmp_path: Path):
    port = free_port()
    check = doctor.check_mqtt(mqtt_config(tmp_path, port))
    assert check.verdict == "fail" and "refused" in check.detail.lower()
    assert f"mosquitto_sub -h 127.0.0.1 -p {port}" in (check.fix or "")
    with loopback_broker(None) as (silent, _):
        check = doctor.check_mqtt(mqtt_config(tmp_path, silent), timeout=0.3)
    assert check.verdict == "fail" and "no CONNACK within 0.3 s" in check.detail


def test_mqtt_is_skipped_when_not_an_output(tmp_path: Path):
    probed: list[object] = []
    check = doctor.check_mqtt(mqtt_config(tmp_path, 1, "[stdout]"), lambda config, timeout: probed.append(config))
    assert check.verdict == "skip" and probed == []
    assert doctor.check_mqtt(None).verdict == "skip"


# 14. service


def systemctl(enabled: CommandResult | None, active: CommandResult | None) -> FakeRunner:
    return FakeRunner({"systemctl is-enabled edge-infer": enabled, "systemctl is-active edge-infer": active})


def test_an_active_service_is_ok():
    check = doctor.check_service(systemctl(said("enabled\n"), said("active\n")))
    assert (check.verdict, check.detail) == ("ok", "active, enabled")


def test_a_failed_service_fails_and_a_stopped_one_warns():
    failed = doctor.check_service(systemctl(said("enabled\n"), said("failed\n", 3)))
    assert failed.verdict == "fail" and "journalctl -u edge-infer" in (failed.fix or "")
    stopped = doctor.check_service(systemctl(said("enabled\n"), said("inactive\n", 3)))
    assert stopped.verdict == "warn" and stopped.fix == "sudo systemctl start edge-infer"
    disabled = doctor.check_service(systemctl(said("disabled\n", 1), said("inactive\n", 3)))
    assert disabled.fix == "sudo systemctl enable --now edge-infer"
    looping = doctor.check_service(systemctl(said("enabled\n"), said("activating\n", 3)))
    assert looping.verdict == "warn" and "loop" in looping.detail


def test_no_systemctl_no_unit_or_no_systemd_is_skipped():
    assert doctor.check_service(FakeRunner()).detail == "no systemctl"
    missing = said(status=1, stderr="Failed to get unit file state for edge-infer.service: No such file or directory")
    assert doctor.check_service(systemctl(missing, said("inactive\n", 3))).verdict == "skip"
    no_systemd = said(status=1, stderr="System has not been booted with systemd as init system (PID 1).")
    check = doctor.check_service(systemctl(said("enabled\n"), no_systemd))
    assert check.verdict == "skip" and "booted with systemd" in check.detail


# the report


def test_the_report_counts_failures_in_the_documented_json():
    report = Report((Check("a", "ok", "fine"), Check("b", "fail", "broken", "mend it"), Check("c", "skip", "-")))
    assert report.failed == 1
    assert report.as_json() == {"checks": [
        {"name": "a", "verdict": "ok", "detail": "fine", "fix": None},
        {"name": "b", "verdict": "fail", "detail": "broken", "fix": "mend it"},
        {"name": "c", "verdict": "skip", "detail": "-", "fix": None}], "failed": 1}


def test_a_check_that_crashes_is_reported_in_its_row():
    def crashes() -> Check:
        raise KeyError("surprise")

    check = doctor.guarded("board", crashes)
    assert check.verdict == "warn" and check.name == "board" and "KeyError" in check.detail


def test_every_check_runs_in_order_against_a_stand_in_pi(models: Path, tmp_path: Path, model_dir: Path):
    (tmp_path / "config.yaml").write_text(f"model:\n  path: {models / MODEL}.tflite\n")
    dev, sysfs = video_nodes(tmp_path, {"video0": "USB Camera"})
    (tmp_path / "device-tree-model").write_text("Raspberry Pi 4 Model B Rev 1.4\x00")
    governor, thermal, board_root = board_files(tmp_path, "ondemand", 51000, "50000")
    runner = FakeRunner({"dpkg": said("armhf\n"), "/usr/bin/python3 -s": said("1.24.2\n"),
                         sys.executable: said(stderr="INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"),
                         "systemctl is-enabled": said("enabled\n"), "systemctl is-active": said("failed\n", 3)})
    host = Host(run=runner, environ={}, prefix=venv(tmp_path, "false"),
                dist_packages=apt_packages(tmp_path, "picamera2"), own_numpy=lambda: "2.4.6",
                device_tree_model=str(tmp_path / "device-tree-model"), dev=dev, video4linux=sysfs,
                usb_devices=str(tmp_path / "usb"), governor=governor, thermal=thermal, board_root=board_root,
                uid=0, groups_of=lambda user: frozenset({"root"}) if user == "root" else None,
                existing_groups=lambda: SYSTEM_GROUPS, edgetpu_library=lambda: False)
    report = doctor.run_checks(str(tmp_path / "config.yaml"), host)
    verdicts = {check.name: check.verdict for check in report.checks}
    assert [check.name for check in report.checks] == ORDER
    assert verdicts == {"architecture": "fail", "python": "ok", "runtime": "ok", "numpy": "warn", "venv": "fail",
                        "picamera2": "ok", "cameras": "ok", "groups": "ok", "coral": "skip", "hailo": "skip",
                        "ai-camera": "skip", "board": "warn",
                        "models": "ok", "config": "ok", "mqtt": "skip", "service": "fail"}
    assert report.failed == 3


# the command line, end to end


@pytest.mark.parametrize("mqtt", [False, True], ids=["stdout", "unreachable-broker"])
def test_doctor_json_from_the_cli(models: Path, tmp_path: Path, mqtt: bool):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"model:\n  path: {models / MODEL}.tflite\n"
                           + (f"outputs: [mqtt]\nmqtt:\n  host: 127.0.0.1\n  port: {free_port()}\n" if mqtt else ""))
    env = {**python_env(HOME=str(tmp_path)), "EDGE_INFER_MODELS": str(tmp_path / "none")}
    done = subprocess.run([sys.executable, "-m", "edge_infer", "doctor", "--config", str(config_file), "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("{"), done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"checks", "failed"}
    assert [check["name"] for check in report["checks"]] == ORDER
    for check in report["checks"]:
        assert set(check) == {"name", "verdict", "detail", "fix"}
        assert check["verdict"] in ("ok", "warn", "fail", "skip") and isinstance(check["detail"], str)
        assert check["fix"] is None or isinstance(check["fix"], str)
    assert report["failed"] == sum(check["verdict"] == "fail" for check in report["checks"])
    assert done.returncode == (1 if report["failed"] else 0), done.stderr
    by_name = {check["name"]: check for check in report["checks"]}
    assert by_name["config"] == {"name": "config", "verdict": "ok", "detail": f"{config_file} is valid", "fix": None}
    assert by_name["models"]["verdict"] == "ok"
    assert by_name["mqtt"]["verdict"] == ("fail" if mqtt else "skip")
    if mqtt:
        assert done.returncode == 1
        text = subprocess.run([sys.executable, "-m", "edge_infer", "doctor", "--config", str(config_file)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert text.returncode == 1
        assert any(line.startswith("FAIL  mqtt") for line in text.stdout.splitlines())
        assert "fix: start the broker" in text.stdout
