"""`edge-infer doctor`: what is wrong with this machine, install or configuration, each with a fix.

Every check is a small function of its inputs (paths, an environment, a command runner) whose defaults
are the real machine, so each one runs on any Linux box against stand-ins: a sysfs tree in a temporary
directory, a runner that answers as dpkg or systemctl would, an environment mapping. The checks only
read and ask: they change nothing, and nothing here runs at import time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ...models.runtime import Runtime, edgetpu_library_present, load_runtime
from .. import board
from .cameras import (
    DEVICE_TREE_MODEL,
    LIST_CAMERAS,
    VIDEO4LINUX,
    WANTED_GROUPS,
    check_cameras,
    check_groups,
    check_picamera2,
    existing_groups,
    groups_of,
    invoking_user,
    libcamera_cameras,
    on_raspberry_pi,
    v4l2_cameras,
)
from .hailo import HailoState, check_hailo, hailo_device, read_hailo
from .hardware import (
    COOLING_FIX,
    CORAL_USB_IDS,
    HOT_C,
    POWER_FIX,
    USB_DEVICES,
    check_board,
    check_coral,
    coral_devices,
    read_service_throttling,
    read_throttled,
)
from .imx500 import Imx500State, check_imx500, read_imx500
from .report import (
    SERVICE,
    SEVERITY,
    TIMED_OUT,
    Check,
    CommandResult,
    Report,
    Runner,
    Verdict,
    joined,
    run_command,
    worst,
)
from .setup import (
    IN_DIRECTORIES,
    MQTT_TIMEOUT_S,
    ConfigState,
    MqttProbe,
    check_config,
    check_models,
    check_mqtt,
    check_service,
    cpu_model,
    probe_mqtt,
    read_config,
)
from .system import (
    ARCH_32BIT,
    ARCH_64BIT,
    DIST_PACKAGES,
    LITERT_PYTHONS,
    MACHINE_32BIT,
    NO_WHEELS_FIX,
    NUMPY_ABI_ERRORS,
    PROBE_TIMEOUT_S,
    SYSTEM_PYTHON,
    XNNPACK_LINE,
    XNNPACK_PROBE,
    apt_numpy_version,
    check_architecture,
    check_numpy,
    check_python,
    check_runtime,
    check_venv,
    numpy_fix,
    numpy_version,
    read_pyvenv,
    shares_system_packages,
    system_picamera2,
)


@dataclass(frozen=True)
class Host:
    """Where the checks look. The defaults are this machine; tests replace the parts it lacks."""

    run: Runner = run_command
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    python: str = field(default_factory=lambda: sys.executable)  # the interpreter edge-infer runs in
    prefix: str = field(default_factory=lambda: sys.prefix)
    python_version: tuple[int, int] | None = None  # None: this interpreter's
    own_numpy: Callable[[], str] = numpy_version
    load_runtime: Callable[[], Runtime] = load_runtime
    system_python: str = SYSTEM_PYTHON
    dist_packages: tuple[str, ...] = DIST_PACKAGES
    device_tree_model: str = DEVICE_TREE_MODEL
    dev: str = "/dev"
    video4linux: str = VIDEO4LINUX
    usb_devices: str = USB_DEVICES
    governor: str = board.GOVERNOR
    thermal: str = board.THERMAL_ZONE
    board_root: str = "/"  # where sys/ is, for the throttling flags (service.board)
    uid: int | None = None  # None: this process's
    groups_of: Callable[[str], frozenset[str] | None] = groups_of
    existing_groups: Callable[[], frozenset[str]] = existing_groups
    edgetpu_library: Callable[[], bool] = edgetpu_library_present
    mqtt_probe: MqttProbe = probe_mqtt


def guarded(name: str, check: Callable[[], Check]) -> Check:
    """One check's own failure (a machine nobody foresaw) is reported in its row; the other checks still run."""
    try:
        return check()
    except Exception as exc:  # a doctor that crashes helps nobody
        return Check(name, "warn", f"the check itself failed: {type(exc).__name__}: {exc}",
                     "please report it with this output")


def run_checks(config_file: str | None = None, host: Host | None = None) -> Report:
    host = host or Host()
    env = host.environ
    state = read_config(config_file)  # first: the runtime, Coral, model and MQTT checks need it
    config = state.config
    apt_numpy = apt_numpy_version(host.run, host.system_python, env)
    is_pi = on_raspberry_pi(host.device_tree_model)
    checks = [
        guarded("architecture", lambda: check_architecture(host.run)),
        guarded("python", lambda: check_python(host.python_version, host.load_runtime)),
        guarded("runtime", lambda: check_runtime(cpu_model(config), host.load_runtime, host.run, host.python, env)),
        guarded("numpy", lambda: check_numpy(host.own_numpy(), apt_numpy, shares_system_packages(host.prefix),
                                             host.python)),
        guarded("venv", lambda: check_venv(host.prefix, host.dist_packages)),
        guarded("picamera2", lambda: check_picamera2(host.run, host.python, env, is_pi, apt_numpy)),
    ]
    picamera2_works = checks[-1].verdict == "ok"
    listed: list[list[str] | str | None] = []  # libcamera's cameras, asked once (a child process) for two checks

    def libcamera_listed() -> list[str] | str | None:
        if not listed:
            listed.append(libcamera_cameras(host.run, host.python, env) if picamera2_works else None)
        return listed[0]

    def cameras() -> Check:
        v4l2, skipped = v4l2_cameras(host.dev, host.video4linux)
        return check_cameras(v4l2, skipped, libcamera_listed())

    def board_health() -> Check:
        return check_board(board.read_text(host.governor), board.cpu_temperature_c(host.thermal),
                           read_throttled(host.board_root, host.run), read_service_throttling(host.run))

    model = config.model if config is not None else None

    def hailo() -> Check:
        wanted = model is not None and model.delegate == "hailo"
        if not wanted and not hailo_device(host.dev):
            return Check("hailo", "skip", "no Hailo (not needed: model.delegate is not hailo)")
        found = read_hailo(model.path if model is not None and wanted else None, model.models_dir if model else None,
                           host.run, host.python, env, host.dev, host.board_root)
        return check_hailo(found, wanted, model is not None and model.fallback_model is not None)

    def ai_camera() -> Check:
        wanted = model is not None and model.delegate == "imx500"
        found = read_imx500(model.path if model is not None and wanted else None, model.models_dir if model else None,
                            libcamera_listed(), host.run, host.python, env, host.board_root)
        return check_imx500(found, wanted, model is not None and model.fallback_model is not None)

    configured = [m for m in ((model.path, model.fallback_model) if model else ()) if m
                  and not (m == model.path and model.delegate == "imx500")]  # the network: ai_camera's to check
    checks += [
        guarded("cameras", cameras),
        guarded("groups", lambda: check_groups(invoking_user(env, host.uid), host.groups_of,
                                               host.existing_groups)),
        guarded("coral", lambda: check_coral(host.edgetpu_library(), coral_devices(host.usb_devices, host.dev),
                                             model is not None and model.delegate == "edgetpu",
                                             model is not None and model.fallback_model is not None)),
        guarded("hailo", hailo),
        guarded("ai-camera", ai_camera),
        guarded("board", board_health),
        guarded("models", lambda: check_models(configured, model.models_dir if model else None)),
        check_config(state),
        guarded("mqtt", lambda: check_mqtt(config, host.mqtt_probe)),
        guarded("service", lambda: check_service(host.run)),
    ]
    return Report(tuple(checks))


__all__ = [
    "ARCH_32BIT", "ARCH_64BIT", "COOLING_FIX", "CORAL_USB_IDS", "Check", "CommandResult", "ConfigState",
    "DEVICE_TREE_MODEL", "DIST_PACKAGES", "HOT_C", "HailoState", "Host", "Imx500State", "IN_DIRECTORIES",
    "LIST_CAMERAS",
    "LITERT_PYTHONS",
    "MACHINE_32BIT", "MQTT_TIMEOUT_S", "MqttProbe", "NO_WHEELS_FIX", "NUMPY_ABI_ERRORS", "POWER_FIX",
    "PROBE_TIMEOUT_S", "Report", "Runner", "SERVICE", "SEVERITY", "SYSTEM_PYTHON", "TIMED_OUT", "USB_DEVICES",
    "VIDEO4LINUX", "Verdict", "WANTED_GROUPS", "XNNPACK_LINE", "XNNPACK_PROBE", "apt_numpy_version",
    "check_architecture", "check_board", "check_cameras", "check_config", "check_coral", "check_groups", "check_hailo",
    "check_imx500",
    "check_models", "check_mqtt", "check_numpy", "check_picamera2", "check_python", "check_runtime",
    "check_service", "check_venv", "coral_devices", "cpu_model", "existing_groups", "groups_of", "guarded",
    "invoking_user", "joined", "libcamera_cameras", "numpy_fix", "numpy_version", "on_raspberry_pi", "probe_mqtt",
    "hailo_device", "read_config", "read_hailo", "read_imx500", "read_pyvenv", "read_service_throttling",
    "read_throttled",
    "run_checks", "run_command",
    "shares_system_packages", "system_picamera2", "v4l2_cameras", "worst",
]
