"""`edge-infer doctor`: what is wrong with this machine, install or configuration, each with a fix.

Every check is a small function of its inputs (paths, an environment, a command runner) whose defaults
are the real machine, so each one runs on any Linux box against stand-ins: a sysfs tree in a temporary
directory, a runner that answers as dpkg or systemctl would, an environment mapping. The checks only
read and ask: they change nothing, and nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import glob
import grp
import json
import os
import platform
import pwd
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..errors import EdgeInferError, ModelError
from ..models.files import EDGETPU_OP, model_dirs, resolve_model
from ..models.pull import sha256_of
from ..models.runtime import EDGETPU_INSTALL_HINT, Runtime, edgetpu_library_present, load_runtime
from ..models.zoo import DEFAULT_MODEL, build_manifest, find_entry, redownload_hint
from ..sources.auto import NOT_CAMERAS, v4l2_devices
from . import board

if TYPE_CHECKING:
    from ..config import Config
    from ..outputs.mqtt import MqttConfig

Verdict = Literal["ok", "warn", "fail", "skip"]

SERVICE = "edge-infer"  # the systemd unit and the system user deploy.sh creates
SYSTEM_PYTHON = "/usr/bin/python3"  # apt's interpreter: it sees apt's numpy and Picamera2
DIST_PACKAGES = ("/usr/lib/python3/dist-packages",)  # where apt puts python3-* packages
DEVICE_TREE_MODEL = "/proc/device-tree/model"
USB_DEVICES = "/sys/bus/usb/devices"
VIDEO4LINUX = "/sys/class/video4linux"

# ai-edge-litert's CPython wheels for manylinux aarch64 and x86_64, as PyPI lists them: 3.10-3.13 in
# 2.1.1-2.1.4, 3.10-3.14 from 2.1.5 to 2.3.0. It publishes no sdist, so on any other Python pip finds
# nothing to install. Move the bounds with the runtime's releases.
LITERT_PYTHONS = ((3, 10), (3, 14))
ARCH_64BIT = ("arm64", "amd64")
ARCH_32BIT = ("armhf", "armel", "i386")
MACHINE_32BIT = ("armv6l", "armv7l", "armv8l", "i386", "i486", "i586", "i686")
NO_WHEELS_FIX = "LiteRT and OpenCV have no wheels for it: install the 64-bit Raspberry Pi OS"

XNNPACK_LINE = "Created TensorFlow Lite XNNPACK delegate"
# Runs in a child: the interpreter prints the XNNPACK line on its own stderr (C++, not Python logging),
# and a model that crashes the runtime must not take the doctor down with it.
XNNPACK_PROBE = ("import sys\n"
                 "from edge_infer.models.runtime import load_runtime\n"
                 "load_runtime().interpreter(model_path=sys.argv[1], num_threads=1).allocate_tensors()\n")
PROBE_TIMEOUT_S = 60.0  # loading a model, on a Pi Zero 2 with a slow SD card

# What an extension built against numpy 1 says when imported under numpy 2 (raspberrypi/picamera2#1088).
NUMPY_ABI_ERRORS = ("numpy.dtype size changed", "_ARRAY_API not found", "compiled using NumPy 1.x",
                    "numpy.core.multiarray failed to import")
LIST_CAMERAS = ("import json\n"
                "from picamera2 import Picamera2\n"
                "print(json.dumps([f\"{c.get('Model', '?')} ({c.get('Id', '?')})\" "
                "for c in Picamera2.global_camera_info()]))\n")

# Which groups open which devices: video for /dev/video* and the media nodes, plugdev for the USB Coral
# (google-coral/libedgetpu debian/edgetpu-accelerator.rules: GROUP="plugdev").
WANTED_GROUPS = {"video": "cameras", "plugdev": "a USB Coral"}

# USB ids of the Coral USB Accelerator: Global Unichip until libedgetpu loads its firmware, Google after
# (the same rule file matches both).
CORAL_USB_IDS = {("1a6e", "089a"): "USB Coral (firmware not loaded yet)", ("18d1", "9302"): "USB Coral"}

HOT_C = 80.0  # where a Pi 4 or 5 starts throttling (85 C is the hard limit)
POWER_FIX = "use the official power supply (5.1 V 3 A for a Pi 4, 5.1 V 5 A for a Pi 5) and its cable"
COOLING_FIX = "cool the board: a heatsink or a fan (the Pi 5 Active Cooler), and air around the case"
MQTT_TIMEOUT_S = 2.0
IN_DIRECTORIES = "in the model directories"


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str | None = None

    def as_json(self) -> dict[str, str | None]:
        return {"name": self.name, "verdict": self.verdict, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def failed(self) -> int:
        return sum(check.verdict == "fail" for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"checks": [check.as_json() for check in self.checks], "failed": self.failed}


@dataclass(frozen=True)
class CommandResult:
    status: int
    stdout: str
    stderr: str

    @property
    def last_error(self) -> str:
        """The last line on stderr: a traceback's exception line, or a tool's one-line complaint."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.status}"


class Runner(Protocol):
    """Runs a command; None when it is not installed."""

    def __call__(self, argv: Sequence[str], *, timeout: float = 10.0,
                 env: Mapping[str, str] | None = None) -> CommandResult | None: ...


TIMED_OUT = 124  # as timeout(1) says it


def run_command(argv: Sequence[str], *, timeout: float = 10.0,
                env: Mapping[str, str] | None = None) -> CommandResult | None:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, errors="replace", timeout=timeout,
                              env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL)
    except (FileNotFoundError, PermissionError):
        return None
    except subprocess.TimeoutExpired:
        return CommandResult(TIMED_OUT, "", f"timed out after {timeout:g} s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


SEVERITY: tuple[Verdict, ...] = ("fail", "warn", "ok", "skip")


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    return next((verdict for verdict in SEVERITY if verdict in verdicts), "skip")


def joined(parts: Sequence[str | None]) -> str | None:
    kept = [p for p in parts if p]
    return "; ".join(dict.fromkeys(kept)) if kept else None  # the same fix twice reads as a bug


# 1. OS and architecture -----------------------------------------------------------------------------


def check_architecture(run: Runner = run_command, machine: Callable[[], str] = platform.machine) -> Check:
    name = "architecture"
    # dpkg, not uname -m: a 32-bit Raspberry Pi OS boots a 64-bit kernel (aarch64) under an armhf userland.
    done = run(["dpkg", "--print-architecture"], timeout=5)
    arch = done.stdout.strip() if done is not None and done.status == 0 else ""
    if not arch:
        kernel = machine()
        if kernel in MACHINE_32BIT:
            return Check(name, "fail", f"no dpkg; the machine is {kernel}, 32-bit", NO_WHEELS_FIX)
        return Check(name, "warn", f"no dpkg to ask for the userland's architecture; the kernel says {kernel}",
                     "edge-infer is made for Raspberry Pi OS and Debian (arm64, amd64); elsewhere make sure "
                     "Python is 64-bit")
    if arch in ARCH_64BIT:
        return Check(name, "ok", f"{arch} userland (dpkg), {machine()} kernel")
    if arch in ARCH_32BIT:
        return Check(name, "fail", f"{arch} userland: 32-bit", NO_WHEELS_FIX)
    return Check(name, "warn", f"{arch} userland: LiteRT publishes wheels for arm64 and amd64 only",
                 "use an arm64 or amd64 system, or build LiteRT for this one")


# 2. Python version vs the runtime's wheels -------------------------------------------------------------


def check_python(version: tuple[int, int] | None = None, load: Callable[[], Runtime] = load_runtime) -> Check:
    name = "python"
    major, minor = version or (sys.version_info.major, sys.version_info.minor)
    (low_major, low_minor), (high_major, high_minor) = LITERT_PYTHONS
    supported = f"{low_major}.{low_minor}-{high_major}.{high_minor}"
    if (low_major, low_minor) <= (major, minor) <= (high_major, high_minor):
        return Check(name, "ok", f"Python {major}.{minor} (ai-edge-litert has wheels for {supported})")
    try:
        runtime = load()
    except EdgeInferError:
        runtime = None
    if runtime is not None and (major, minor) > (high_major, high_minor):
        # A newer runtime than this range knows about may already have wheels for it: it loaded.
        return Check(name, "warn", f"Python {major}.{minor} is newer than the {supported} this edge-infer knows "
                     f"ai-edge-litert wheels for, but {runtime.name} is installed and loads",
                     f"nothing while it loads; if pip finds no ai-edge-litert for it, use Python {supported}")
    return Check(name, "fail", f"Python {major}.{minor}: ai-edge-litert publishes wheels for {supported} only",
                 f"make the venv with a Python from {supported} (Raspberry Pi OS Bookworm has 3.11, Trixie 3.13)")


# 3. The interpreter module and XNNPACK ----------------------------------------------------------------


def check_runtime(model: Path | None, load: Callable[[], Runtime] = load_runtime, run: Runner = run_command,
                  python: str | None = None, env: Mapping[str, str] | None = None) -> Check:
    name = "runtime"
    try:
        runtime = load()
    except EdgeInferError as exc:
        return Check(name, "fail", " ".join(str(exc).split()), "pip install ai-edge-litert (in the venv)")
    if model is None:
        return Check(name, "ok", f"{runtime.name}; XNNPACK not checked (no CPU model to load)")
    done = run([python or sys.executable, "-c", XNNPACK_PROBE, str(model)], timeout=PROBE_TIMEOUT_S, env=env)
    if done is None or done.status != 0:
        why = done.last_error if done is not None else "the interpreter could not be started"
        return Check(name, "warn", f"{runtime.name}; could not load {model.name} to see whether XNNPACK is on: "
                     f"{why}", "see the model check; edge-infer run --log-level debug shows the runtime's messages")
    if XNNPACK_LINE not in done.stderr:
        return Check(name, "warn", f"{runtime.name}; loading {model.name} created no XNNPACK delegate: inference "
                     "runs on LiteRT's reference kernels, several times slower",
                     "pip install --upgrade ai-edge-litert (tflite-runtime and TensorFlow builds may lack XNNPACK)")
    return Check(name, "ok", f"{runtime.name}; XNNPACK on (loaded {model.name})")


# 4. numpy in this interpreter vs apt's --------------------------------------------------------------------


def apt_numpy_version(run: Runner = run_command, system_python: str = SYSTEM_PYTHON,
                      env: Mapping[str, str] | None = None) -> str | None:
    """numpy as apt's interpreter sees it (-s: not a user's pip install), or None without one."""
    done = run([system_python, "-s", "-c", "import numpy; print(numpy.__version__)"], timeout=30, env=env)
    if done is None or done.status != 0 or not done.stdout.strip():
        return None
    return done.stdout.strip().splitlines()[-1]


def numpy_fix(apt_version: str, python: str | None = None) -> str:
    return (f"{python or sys.executable} -m pip install 'numpy=={apt_version}' (apt's own numpy, the one its "
            "packages are built against; sudo ./deploy.sh pins it in the service's venv)")


def check_numpy(own: str, apt: str | None, shares_system_packages: bool, python: str | None = None) -> Check:
    name = "numpy"
    if apt is None:
        return Check(name, "ok", f"numpy {own}; no apt numpy (python3-numpy) to clash with")
    own_major, apt_major = own.split(".")[0], apt.split(".")[0]
    # Only one way round breaks: extensions built against numpy 2 also import under numpy 1.
    if apt_major == "1" and own_major != "1":
        clash = (f"numpy {own} here, apt's is {apt}: apt packages built against numpy 1 (Picamera2's simplejpeg) "
                 "fail to import under numpy 2 with 'numpy.dtype size changed'")
        if shares_system_packages:
            return Check(name, "fail", clash, numpy_fix(apt, python))
        return Check(name, "warn", clash + "; this venv does not see apt's packages yet",
                     "before giving the venv apt's packages (for Picamera2): " + numpy_fix(apt, python))
    return Check(name, "ok", f"numpy {own}; apt's is {apt}")


# 5. The venv and apt's packages ------------------------------------------------------------------------


def read_pyvenv(prefix: str) -> dict[str, str] | None:
    """pyvenv.cfg of the venv at `prefix` as key -> value, or None when `prefix` is not a venv."""
    try:
        text = (Path(prefix) / "pyvenv.cfg").read_text(errors="replace")
    except OSError:
        return None
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip().lower(): value.strip() for key, value in pairs}


def shares_system_packages(prefix: str | None = None) -> bool:
    """Whether this interpreter sees apt's packages: outside a venv, or a venv made with --system-site-packages."""
    cfg = read_pyvenv(prefix or sys.prefix)
    return cfg is None or cfg.get("include-system-site-packages", "false").lower() == "true"


def system_picamera2(dist_packages: Sequence[str] = DIST_PACKAGES) -> Path | None:
    return next((Path(d) / "picamera2" for d in dist_packages if (Path(d) / "picamera2").is_dir()), None)


def check_venv(prefix: str | None = None, dist_packages: Sequence[str] = DIST_PACKAGES) -> Check:
    name = "venv"
    prefix = prefix or sys.prefix
    cfg = read_pyvenv(prefix)
    if cfg is None:
        return Check(name, "skip", f"not in a venv ({prefix})")
    includes = cfg.get("include-system-site-packages", "false").lower() == "true"
    apt_picamera2 = system_picamera2(dist_packages)
    if includes:
        return Check(name, "ok", f"{prefix} sees apt's packages (--system-site-packages)")
    if apt_picamera2 is not None:
        return Check(name, "fail", f"{prefix} was made without --system-site-packages, so it cannot see the "
                     f"Picamera2 apt installed ({apt_picamera2})",
                     f"set include-system-site-packages = true in {Path(prefix) / 'pyvenv.cfg'}, or remake it: "
                     f"python3 -m venv --system-site-packages {prefix}")
    return Check(name, "ok", f"{prefix} (without apt's packages; no apt Picamera2 to need them)")


# 6. Picamera2 --------------------------------------------------------------------------------------------


def on_raspberry_pi(model_path: str = DEVICE_TREE_MODEL) -> bool:
    return "Raspberry Pi" in (board.read_text(model_path) or "")


def check_picamera2(run: Runner = run_command, python: str | None = None, env: Mapping[str, str] | None = None,
                    is_pi: bool = False, apt_numpy: str | None = None) -> Check:
    name = "picamera2"
    done = run([python or sys.executable, "-c", "import picamera2"], timeout=30, env=env)
    if done is None:
        return Check(name, "skip", "the interpreter could not be started")
    if done.status == 0:
        return Check(name, "ok", "import picamera2 works")
    error = done.last_error
    if "No module named 'picamera2'" in error:
        if not is_pi:
            return Check(name, "skip", "not installed (not a Raspberry Pi)")
        return Check(name, "warn", "not installed: the Pi camera (CSI) cannot be used; USB cameras still can",
                     "sudo apt install python3-picamera2, in a venv made with --system-site-packages")
    if any(marker in done.stderr for marker in NUMPY_ABI_ERRORS):  # numpy 2 prints its warning lines first
        fix = (numpy_fix(apt_numpy, python) if apt_numpy
               else f"{python or sys.executable} -m pip install 'numpy<2' (Picamera2's modules are built on numpy 1)")
        return Check(name, "fail", f"import picamera2 fails: {error}", fix)
    return Check(name, "fail", f"import picamera2 fails: {error}",
                 "sudo apt install --reinstall python3-picamera2 python3-libcamera")


# 7. Cameras --------------------------------------------------------------------------------------------


def v4l2_cameras(dev: str = "/dev", sysfs: str = VIDEO4LINUX) -> tuple[list[str], int]:
    """Capture devices with their names, and how many of the Pi's codec/ISP/CSI-receiver nodes were left out."""
    cameras = [f"{node} ({board.read_text(f'{sysfs}/{Path(node).name}/name') or 'no name'})"
               for node in v4l2_devices(dev, sysfs)]
    names = (board.read_text(f"{sysfs}/{Path(node).name}/name") or "" for node in glob.glob(f"{dev}/video*"))
    return cameras, sum(bool(NOT_CAMERAS.search(n)) for n in names)


def libcamera_cameras(run: Runner = run_command, python: str | None = None,
                      env: Mapping[str, str] | None = None) -> list[str] | str:
    """The cameras libcamera lists, through Picamera2 in a child (it holds the camera stack open); or why not."""
    done = run([python or sys.executable, "-c", LIST_CAMERAS], timeout=30, env=env)
    if done is None or done.status != 0:
        return done.last_error if done is not None else "the interpreter could not be started"
    try:
        return [str(c) for c in json.loads(done.stdout.strip().splitlines()[-1])]
    except (ValueError, IndexError):
        return f"unexpected answer: {done.stdout.strip()[:200]!r}"


def check_cameras(v4l2: Sequence[str], skipped: int, libcamera: Sequence[str] | str | None) -> Check:
    name = "cameras"
    parts = []
    if v4l2:
        parts.append("V4L2: " + ", ".join(v4l2))
    if skipped:
        parts.append(f"{skipped} Pi codec/ISP/CSI-receiver nodes left out")
    if isinstance(libcamera, str):
        parts.append(f"libcamera: could not list ({libcamera})")
    elif libcamera:
        parts.append("libcamera: " + ", ".join(libcamera))
    if v4l2 or (libcamera and not isinstance(libcamera, str)):
        return Check(name, "ok", "; ".join(parts))
    return Check(name, "warn", "; ".join(["no camera found", *parts]),
                 "plug in a USB camera (ls /dev/video*), or check a Pi camera's ribbon cable and run "
                 "rpicam-hello --list-cameras; a file, a directory of images or a stream URL works without one")


# 8. Groups ----------------------------------------------------------------------------------------------


def groups_of(user: str) -> frozenset[str] | None:
    """The groups the user database gives `user` (what a new login gets), or None when there is no such user."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    names = {g.gr_name for g in grp.getgrall() if user in g.gr_mem}
    with contextlib.suppress(KeyError):  # a primary group missing from /etc/group
        names.add(grp.getgrgid(entry.pw_gid).gr_name)
    return frozenset(names)


def existing_groups() -> frozenset[str]:
    return frozenset(g.gr_name for g in grp.getgrall())


def invoking_user(environ: Mapping[str, str], uid: int | None = None) -> str:
    """Who is asking: under sudo, the user who ran sudo (their groups are what matters for `edge-infer run`)."""
    uid = os.getuid() if uid is None else uid
    if uid == 0 and environ.get("SUDO_USER"):
        return environ["SUDO_USER"]
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return environ.get("USER", str(uid))


def check_groups(user: str, lookup: Callable[[str], frozenset[str] | None] = groups_of,
                 present: Callable[[], frozenset[str]] = existing_groups) -> Check:
    name = "groups"
    wanted = [g for g in WANTED_GROUPS if g in present()]  # usermod refuses a group the system lacks
    found: list[str] = []
    fixes: list[str] = []
    verdicts: list[Verdict] = []
    for who in dict.fromkeys([user, SERVICE]):
        groups = lookup(who)
        if groups is None:
            continue
        if who == "root":
            found.append("root: opens every device")
            continue
        missing = [g for g in wanted if g not in groups]
        if missing:
            verdicts.append("warn")
            found.append(f"{who}: not in " + ", ".join(f"{g} ({WANTED_GROUPS[g]})" for g in missing))
            then = "sudo systemctl restart edge-infer" if who == SERVICE else "log out and in again"
            fixes.append(f"sudo usermod -a -G {','.join(missing)} {who}, then {then}")
        else:
            found.append(f"{who}: {', '.join(wanted) or 'no video/plugdev groups on this system'}")
    if not found:
        return Check(name, "skip", f"no user {user} in the user database")
    return Check(name, worst(verdicts) if verdicts else "ok", "; ".join(found), joined(fixes))


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


# 11. Model files -----------------------------------------------------------------------------------------


def check_models(configured: Sequence[str], models_dir: str | None) -> Check:
    """The configured model(s) and every .tflite in the model directories, by sha256 against the zoo."""
    name = "models"
    manifest = build_manifest()
    verdicts: list[Verdict] = []
    problems: list[str] = []
    fixes: list[str] = []
    files: dict[Path, str] = {}  # path -> how it was found
    for wanted in configured:
        try:
            files.setdefault(resolve_model(wanted, models_dir).resolve(), f"configured {wanted}")
        except ModelError as exc:
            entry = find_entry(manifest, wanted) if os.sep not in wanted else None
            # A zoo name that is not here yet is pulled by the first `edge-infer run`, where there is internet.
            verdicts.append("warn" if entry is not None else "fail")
            problems.append(f"{wanted}: not downloaded yet (edge-infer run fetches it)" if entry is not None
                            else " ".join(str(exc).split()))
            fixes.append(f"edge-infer models pull {entry.name}" if entry is not None
                         else "set model.path to an existing .tflite file")
    directories = [d for d in model_dirs(models_dir) if d.is_dir()]
    for directory in directories:
        for path in sorted(directory.glob("*.tflite")):
            files.setdefault(path.resolve(), IN_DIRECTORIES)
    matched, unknown = [], []
    for path in files:
        try:
            with path.open("rb") as f:
                header = f.read(8)
            digest = sha256_of(path)
        except OSError as exc:
            verdicts.append("fail")
            problems.append(f"{path}: cannot read ({exc.strerror})")
            fixes.append(f"check the permissions of {path}")
            continue
        if header[4:8] != b"TFL3":  # every TFLite flatbuffer has its identifier there
            verdicts.append("fail")
            problems.append(f"{path}: not a TFLite model (truncated or damaged)")
            fixes.append(redownload_hint(path.name))
            continue
        entry = find_entry(manifest, path.name)
        if entry is None or entry.sha256 is None:
            unknown.append(path.name)
        elif digest != entry.sha256:
            verdicts.append("fail")
            problems.append(f"{path}: sha256 {digest[:12]}... is not the zoo's {entry.sha256[:12]}... (damaged)")
            fixes.append(redownload_hint(path.name))
        else:
            matched.append(path.name)
    if not files and not problems:
        return Check(name, "warn", "no model files in " + ", ".join(map(str, model_dirs(models_dir))),
                     f"edge-infer models pull {DEFAULT_MODEL}")
    lines = [*problems]
    lines += [f"model {how.removeprefix('configured ')}" + ("" if how.endswith(str(path)) else f" is {path}")
              for path, how in files.items() if how != IN_DIRECTORIES]
    if files:
        counted = f"{len(files)} file{'s' * (len(files) != 1)} checked: {len(matched)} match the zoo's sha256"
        lines.append(counted + (f", {len(unknown)} not in the zoo ({', '.join(unknown)})" if unknown else ""))
    return Check(name, worst(verdicts) if verdicts else "ok", "; ".join(lines), joined(fixes))


def cpu_model(config: Config | None) -> Path | None:
    """The model the CPU would run: the configured one, or its fallback when it is an Edge TPU build."""
    if config is None:
        return None
    for wanted in (config.model.path, config.model.fallback_model):
        if wanted is None:
            continue
        try:
            path = resolve_model(wanted, config.model.models_dir)
            with path.open("rb") as f:
                if EDGETPU_OP not in f.read():
                    return path
        except (ModelError, OSError):
            continue
    return None


# 12. The configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigState:
    file: str | None
    config: Config | None
    error: str | None


def read_config(explicit: str | None) -> ConfigState:
    from ..config import find_config_file, load_config

    file = find_config_file(explicit)
    try:
        return ConfigState(file, load_config(file), None)
    except EdgeInferError as exc:
        return ConfigState(file, None, " ".join(str(exc).split()))


def check_config(state: ConfigState) -> Check:
    name = "config"
    if state.error is not None:
        where = f" --config {state.file}" if state.file else ""
        return Check(name, "fail", state.error,
                     f"fix {state.file or 'the file'}; edge-infer run --check-config{where} checks it again")
    if state.file is None:
        return Check(name, "ok", "no config file (--config, $EDGE_INFER_CONFIG, ./config.yaml, "
                     "/etc/edge-infer/config.yaml): the defaults")
    return Check(name, "ok", f"{state.file} is valid")


# 13. MQTT broker -------------------------------------------------------------------------------------------


MqttProbe = Callable[["MqttConfig", float], "str | None"]


def probe_mqtt(config: MqttConfig, timeout: float = MQTT_TIMEOUT_S) -> str | None:
    """None when the broker answers CONNECT with an accepting CONNACK within `timeout`; else what went wrong."""
    from ..outputs.mqtt.client import make_client  # paho, only when the broker is probed

    answer: list[Any] = []
    try:
        # Its own client id: reusing the service's would make the broker drop the running service's session.
        client = make_client(config, f"edge-infer-doctor-{socket.gethostname()}-{os.getpid()}")
    except EdgeInferError as exc:
        return " ".join(str(exc).split())
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
    client.connect_timeout = timeout
    try:
        client.connect(config.host, config.port, keepalive=max(5, int(timeout * 2)))
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            client.loop(timeout=0.05)
    except (OSError, ValueError, EdgeInferError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    finally:
        client.disconnect()
    if not answer:
        return (f"it accepted the connection but sent no CONNACK within {timeout:g} s "
                "(an MQTT broker? TLS as it expects?)")
    if answer[0].is_failure:
        return f"the broker refused the connection: {answer[0]}"
    return None


def check_mqtt(config: Config | None, probe: MqttProbe = probe_mqtt, timeout: float = MQTT_TIMEOUT_S) -> Check:
    name = "mqtt"
    if config is None:
        return Check(name, "skip", "the configuration did not load")
    if "mqtt" not in config.outputs:
        return Check(name, "skip", "outputs do not include mqtt")
    where = f"{config.mqtt.host}:{config.mqtt.port}"
    error = probe(config.mqtt, timeout)
    if error is None:
        return Check(name, "ok", f"{where} answered CONNECT" + (" (TLS)" if config.mqtt.tls else ""))
    return Check(name, "fail", f"{where}: {error}",
                 f"start the broker or point mqtt.host/mqtt.port at it (mosquitto_sub -h {config.mqtt.host} "
                 f"-p {config.mqtt.port} -t '#' tests it); classification goes on meanwhile")


# 14. The service --------------------------------------------------------------------------------------------


def check_service(run: Runner = run_command) -> Check:
    name = "service"
    enabled = run(["systemctl", "is-enabled", SERVICE], timeout=10)
    if enabled is None:
        return Check(name, "skip", "no systemctl")
    state = enabled.stdout.strip()
    if not state or state == "not-found" or "No such file" in enabled.stderr:
        return Check(name, "skip", "the edge-infer service is not installed (sudo ./deploy.sh installs it)")
    active = run(["systemctl", "is-active", SERVICE], timeout=10)
    running = active.stdout.strip() if active is not None else ""
    if not running:
        why = active.last_error if active is not None else "no answer"
        return Check(name, "skip", f"installed ({state}); systemd cannot say whether it runs: {why}")
    detail = f"{running}, {state}"
    if running == "active":
        return Check(name, "ok", detail)
    logs = "journalctl -u edge-infer -e shows why"
    if running == "failed":
        return Check(name, "fail", detail, f"{logs}; fix it, then sudo systemctl restart edge-infer")
    if running in ("activating", "reloading", "deactivating"):
        return Check(name, "warn", detail + " (restarting in a loop?)", logs)
    if state == "enabled":
        return Check(name, "warn", detail + ": enabled but not running", "sudo systemctl start edge-infer")
    return Check(name, "warn", detail + ": installed but not running", "sudo systemctl enable --now edge-infer")


# The report ----------------------------------------------------------------------------------------------


def numpy_version() -> str:
    import numpy

    return str(numpy.__version__)


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
    throttled: str = board.FIRMWARE_THROTTLED
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

    def cameras() -> Check:
        v4l2, skipped = v4l2_cameras(host.dev, host.video4linux)
        listed = libcamera_cameras(host.run, host.python, env) if picamera2_works else None
        return check_cameras(v4l2, skipped, listed)

    def board_health() -> Check:
        return check_board(board.read_text(host.governor), board.cpu_temperature_c(host.thermal),
                           read_throttled(host.throttled, host.run))

    model = config.model if config is not None else None
    configured = [m for m in ((model.path, model.fallback_model) if model else ()) if m]
    checks += [
        guarded("cameras", cameras),
        guarded("groups", lambda: check_groups(invoking_user(env, host.uid), host.groups_of,
                                               host.existing_groups)),
        guarded("coral", lambda: check_coral(host.edgetpu_library(), coral_devices(host.usb_devices, host.dev),
                                             model is not None and model.delegate == "edgetpu",
                                             model is not None and model.fallback_model is not None)),
        guarded("board", board_health),
        guarded("models", lambda: check_models(configured, model.models_dir if model else None)),
        check_config(state),
        guarded("mqtt", lambda: check_mqtt(config, host.mqtt_probe)),
        guarded("service", lambda: check_service(host.run)),
    ]
    return Report(tuple(checks))
