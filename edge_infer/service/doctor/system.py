"""Checks of the machine and the Python install: the architecture, Python against the LiteRT wheels, the
runtime and XNNPACK, numpy against apt's, the venv."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ...errors import EdgeInferError
from ...models.runtime import Runtime, load_runtime
from .report import Check, Runner, run_command

SYSTEM_PYTHON = "/usr/bin/python3"  # apt's interpreter: it sees apt's numpy and Picamera2
DIST_PACKAGES = ("/usr/lib/python3/dist-packages",)  # where apt puts python3-* packages

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


# The report ----------------------------------------------------------------------------------------------


def numpy_version() -> str:
    import numpy

    return str(numpy.__version__)
