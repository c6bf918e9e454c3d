"""Checks of the cameras: Picamera2 and libcamera, the V4L2 devices, the groups that may open them."""

from __future__ import annotations

import contextlib
import glob
import grp
import json
import os
import pwd
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ...sources.auto import NOT_CAMERAS, v4l2_devices
from .. import board
from .report import SERVICE, Check, Runner, Verdict, joined, run_command, worst
from .system import NUMPY_ABI_ERRORS, numpy_fix

DEVICE_TREE_MODEL = "/proc/device-tree/model"
VIDEO4LINUX = "/sys/class/video4linux"
LIST_CAMERAS = ("import json\n"
                "from picamera2 import Picamera2\n"
                "print(json.dumps([f\"{c.get('Model', '?')} ({c.get('Id', '?')})\" "
                "for c in Picamera2.global_camera_info()]))\n")

# Which groups open which devices: video for /dev/video* and the media nodes, plugdev for the USB Coral
# (google-coral/libedgetpu debian/edgetpu-accelerator.rules: GROUP="plugdev").
WANTED_GROUPS = {"video": "cameras", "plugdev": "a USB Coral"}


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
