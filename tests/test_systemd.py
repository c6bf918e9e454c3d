"""The service side: sd_notify against a stand-in NOTIFY_SOCKET, the unit file, and deploy.sh into a temporary root."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, NotifySocket, need

from edge_infer.service.systemd import SystemdNotifier
from edge_infer.values import Class, Classification, Timing

UNIT = REPO / "systemd" / "edge-infer.service"
DEPLOY = REPO / "deploy.sh"
EXPOSURE_LIMIT = 2.0  # stated in the README; `systemd-analyze security` scores 0 (locked down) to 10


# --- sd_notify ---------------------------------------------------------------------------------

def test_ready_after_the_first_frame_then_watchdog_pings_then_stopping(tmp_path, models, images):
    notify = NotifySocket(tmp_path / "notify")
    config = tmp_path / "loop.yaml"
    config.write_text(f"source:\n  type: images\n  path: {images / 'bird.bmp'}\n  loop: true\n")
    process = subprocess.Popen([sys.executable, "-m", "edge_infer", "run", "--config", str(config), "--model",
                                str(models / "mobilenet_v1_0.25_128_quant.tflite")], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"})
    deadline = time.monotonic() + 30
    while not any(m.startswith("READY=1") for m in notify.drain(0.1)) and time.monotonic() < deadline:
        pass
    notify.drain(1.0)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=10)
    said = notify.drain(0.3)
    assert said[0].startswith("READY=1\n") and "mobilenet_v1_0.25_128_quant" in said[0]
    assert said[-1] == "STOPPING=1"
    pings = [at for at, m in notify.messages if m == "WATCHDOG=1"]
    span = pings[-1] - pings[0]
    # Every 0.1 s (half of WATCHDOG_USEC) while frames flow, not once per frame (hundreds per second here).
    assert 5 <= len(pings) <= span / 0.1 + 3


def test_no_ready_when_the_model_cannot_load(tmp_path, images):
    notify = NotifySocket(tmp_path / "notify")
    done = subprocess.run([sys.executable, "-m", "edge_infer", "run", "--model", str(tmp_path / "missing.tflite"),
                           "--source", str(images / "bird.bmp")], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "NOTIFY_SOCKET": notify.path}, timeout=60)
    assert done.returncode == 3
    assert not any(m.startswith("READY") for m in notify.drain(0.2))


def result() -> Classification:
    return Classification(1, 0.0, "m", "cpu", (Class(1, "cat", 1.0),), Timing(0, 0, 0))


def test_watchdog_pings_stop_when_frames_stop(tmp_path):
    notify = NotifySocket(tmp_path / "notify")
    now = [0.0]
    notifier = SystemdNotifier(notify.path, watchdog_interval_s=1.0, clock=lambda: now[0])
    for t in (0.0, 0.2, 0.4, 0.6, 5.0):  # frames at 5 fps, then a 4.4 s stall, then one frame
        now[0] = t
        notifier.publish(result())
    assert notify.drain(0.2) == ["READY=1\nSTATUS=classifying with m on cpu", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"]


def test_watchdog_is_off_for_another_pid():
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000",
                                                 "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier is not None and notifier._ping_every is None
    assert SystemdNotifier.from_environment({}) is None


# --- the unit ----------------------------------------------------------------------------------

def test_unit_verifies(tmp_path):
    analyze = need("systemd-analyze")
    # verify insists that ExecStart exists: point it at a stand-in, leave every other line as shipped.
    stand_in = tmp_path / "edge-infer"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    unit = tmp_path / "edge-infer.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge-infer/venv/bin/edge-infer", str(stand_in)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    # verify exits 0 even for unknown keys; anything it prints is a finding.
    assert done.returncode == 0 and done.stdout + done.stderr == ""


def test_unit_exposure_is_at_most_the_stated_limit():
    analyze = need("systemd-analyze")
    done = subprocess.run([analyze, "security", "--offline=yes", str(UNIT)], capture_output=True, text=True)
    found = re.search(r"Overall exposure level for edge-infer.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= EXPOSURE_LIMIT


def test_unit_keeps_config_errors_from_restarting():
    text = UNIT.read_text()
    assert re.search(r"^RestartPreventExitStatus=.*\b2\b", text, re.M)  # ConfigError's exit status
    assert "Type=notify" in text and re.search(r"^WatchdogSec=\d+", text, re.M)


# --- deploy.sh ---------------------------------------------------------------------------------

def deploy(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DEPLOY), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_mtime_ns, p.lstat().st_size) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory, shared) -> Path:
    root = tmp_path_factory.mktemp("root")
    done = deploy("--root", str(root), "--model-mirror", str(shared / "models"))
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def test_shell_scripts_are_shellcheck_clean():
    scripts = [DEPLOY, REPO / ".ci/run", REPO / "tests/qemu-user.sh", REPO / "tests/arm/run.sh",
               REPO / "tests/system/run.sh", REPO / "tests/system/guest.sh"]
    # -x: follow what the stages source, from the repository's top (the paths their directives give).
    done = subprocess.run([need("shellcheck"), "-x", *map(str, scripts)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout


def test_deploy_lays_out_the_service(installed: Path, shared: Path):
    unit = installed / "etc/systemd/system/edge-infer.service"
    assert unit.read_text() == UNIT.read_text()
    wants = installed / "etc/systemd/system/multi-user.target.wants/edge-infer.service"
    assert wants.is_symlink() and os.readlink(wants) == "/etc/systemd/system/edge-infer.service"
    model = installed / "var/lib/edge-infer/models/tf2_mobilenet_v2_1.0_224_ptq.tflite"
    assert model.read_bytes() == (shared / "models/tf2_mobilenet_v2_1.0_224_ptq.tflite").read_bytes()
    config = (installed / "etc/edge-infer/config.yaml").read_text()
    assert "\noutputs: [mqtt]\n" in config  # the service publishes to MQTT, not every frame to the journal
    assert config.replace("outputs: [mqtt]", "outputs: [stdout]") == (REPO / "config.yaml").read_text()


def test_the_installed_program_runs(installed: Path, images: Path, tmp_path: Path):
    program = installed / "opt/edge-infer/venv/bin/edge-infer"
    check = subprocess.run([str(program), "run", "--config", str(installed / "etc/edge-infer/config.yaml"),
                            "--check-config"], capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    done = subprocess.run([str(program), "run", "--source", str(images / "parrot.jpg"), "--top-k", "1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**os.environ, "EDGE_INFER_MODELS": str(installed / "var/lib/edge-infer/models")})
    assert done.returncode == 0, done.stderr
    assert '"label":"macaw"' in done.stdout


def test_deploy_twice_changes_nothing(installed: Path, shared: Path):
    before = snapshot(installed)
    done = deploy("--root", str(installed), "--model-mirror", str(shared / "models"))
    assert done.returncode == 0, done.stderr
    assert snapshot(installed) == before
    assert "installed" not in done.stdout.replace("is installed.", "") and "fetched" not in done.stdout


def test_deploy_keeps_an_edited_config(installed: Path, shared: Path):
    config = installed / "etc/edge-infer/config.yaml"
    original = config.read_text()
    config.write_text(original.replace("host: localhost", "host: broker.lan"))
    try:
        done = deploy("--root", str(installed), "--model-mirror", str(shared / "models"))
        assert done.returncode == 0
        assert "host: broker.lan" in config.read_text()
        assert (installed / "etc/edge-infer/config.yaml.dist").read_text() == original
    finally:
        config.write_text(original)
        (installed / "etc/edge-infer/config.yaml.dist").unlink(missing_ok=True)


def test_deploy_configures_the_model_it_installs(tmp_path: Path, shared: Path):
    done = deploy("--root", str(tmp_path), "--model", "mobilenet_v1_0.25_128_quant.tflite", "--model-mirror",
                  str(shared / "models"))
    assert done.returncode == 0, done.stderr
    assert "  path: mobilenet_v1_0.25_128_quant\n" in (tmp_path / "etc/edge-infer/config.yaml").read_text()
    assert (tmp_path / "var/lib/edge-infer/models/mobilenet_v1_0.25_128_quant.tflite").is_file()


def test_dry_run_changes_nothing(tmp_path: Path, shared: Path):
    done = deploy("--root", str(tmp_path), "--dry-run", "--model-mirror", str(shared / "models"))
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
    assert "+ python3 -m venv --system-site-packages" in done.stdout and "+ install -D" in done.stdout


def test_deploy_refuses_a_32_bit_userland_early(tmp_path: Path, shared: Path):
    # 32-bit Raspberry Pi OS: dpkg says armhf while `uname -m` says aarch64 under the 64-bit kernel.
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    for tool, says in (("dpkg", "armhf"), ("uname", "aarch64")):
        (stand_ins / tool).write_text(f"#!/bin/sh\necho {says}\n")
        (stand_ins / tool).chmod(0o755)
    root = tmp_path / "root"
    root.mkdir()
    done = deploy("--root", str(root), "--model-mirror", str(shared / "models"),
                  env={"PATH": f"{stand_ins}:{os.environ['PATH']}"})
    assert done.returncode == 2
    assert "userland is armhf" in done.stderr and "64-bit Raspberry Pi OS" in done.stderr
    assert list(root.iterdir()) == []  # refused before anything was made


def test_deploy_puts_the_service_user_in_the_camera_and_coral_groups(tmp_path: Path, shared: Path):
    if os.geteuid() != 0:
        pytest.skip("the system install's dry run checks that it runs as root")
    done = deploy("--dry-run", "--model-mirror", str(shared / "models"))
    assert done.returncode == 0, done.stderr
    for group in ("video", "plugdev"):  # apex only where the gasket driver made the group
        if subprocess.run(["getent", "group", group], capture_output=True).returncode == 0:
            assert f"+ usermod -a -G {group} edge-infer" in done.stdout
    assert re.search(r"^SupplementaryGroups=.*\bplugdev\b", UNIT.read_text(), re.M)


def test_a_model_with_the_wrong_checksum_is_refused(tmp_path: Path, shared: Path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tf2_mobilenet_v2_1.0_224_ptq.tflite").write_bytes(b"tampered")
    root = tmp_path / "root"
    models = root / "var/lib/edge-infer/models"
    models.mkdir(parents=True)
    # Only the model step can fail here: pre-install the rest by hand is not needed, deploy stops at the model.
    done = deploy("--root", str(root), "--model-mirror", str(mirror))
    assert done.returncode == 2
    assert "does not have the expected sha256" in done.stderr
    assert list(models.iterdir()) == []  # no half or bad file left behind


def test_uninstall_keeps_config_and_models_unless_purged(tmp_path: Path, installed: Path):
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    done = deploy("--root", str(root), "--uninstall")
    assert done.returncode == 0, done.stderr
    assert not (root / "opt/edge-infer").exists() and not (root / "etc/systemd/system/edge-infer.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/edge-infer.service").is_symlink()
    assert (root / "etc/edge-infer/config.yaml").exists()
    assert (root / "var/lib/edge-infer/models/tf2_mobilenet_v2_1.0_224_ptq.tflite").exists()
    done = deploy("--root", str(root), "--uninstall", "--purge")
    assert done.returncode == 0
    assert not (root / "etc/edge-infer").exists() and not (root / "var/lib/edge-infer").exists()


def test_deploy_rejects_unknown_options():
    done = deploy("--frobnicate")
    assert done.returncode == 2 and "unknown option '--frobnicate'" in done.stderr
