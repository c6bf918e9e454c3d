"""`edge-infer run`: flags onto the configuration, signals onto the stop event, the run's end onto an exit status."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..config import find_config_file, load_config
from ..errors import EXIT_OK, EXIT_SOURCE
from ..run import open_run
from ..schema import Path
from ..sources.registry import source_from_argument
from . import Signals

log = logging.getLogger("edge_infer")

# flag dest -> (config key path, flag as the user typed it)
RUN_OVERRIDES: dict[str, tuple[Path, str]] = {
    "model": (("model", "path"), "--model"),
    "labels": (("model", "labels"), "--labels"),
    "threads": (("model", "num_threads"), "--threads"),
    "delegate": (("model", "delegate"), "--delegate"),
    "crop": (("preprocess", "crop"), "--crop"),
    "top_k": (("postprocess", "top_k"), "--top-k"),
    "threshold": (("postprocess", "threshold"), "--threshold"),
    "smoothing": (("postprocess", "smoothing"), "--smoothing"),
    "frames": (("run", "frames"), "--frames"),
    "max_frames": (("run", "max_frames"), "--max-frames"),
    "log_level": (("log_level",), "--log-level"),
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="classify frames from a camera, video or images; JSON lines on stdout",
                              description="Classify frames; one JSON object per line on stdout, logs on stderr. "
                              "Exit status: 0 done, 2 configuration, 3 model, 4 source, 5 runtime/accelerator.")
    run.add_argument("--config", help="YAML config (default: $EDGE_INFER_CONFIG, ./config.yaml, "
                     "/etc/edge-infer/config.yaml, else built-in defaults)")
    run.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    run.add_argument("--source", help="auto, picamera2, a camera index or /dev/videoN, a URL, or an image, "
                     "directory, glob or video file")
    run.add_argument("--model", help="a .tflite path or a model name in the model directories")
    run.add_argument("--labels", help="labels file (default: labels in the model's metadata)")
    run.add_argument("--threads", type=int, help="interpreter threads (default: all usable cores)")
    run.add_argument("--delegate", help="cpu, edgetpu, hailo (a .hef) or imx500 (an .rpk on the AI Camera)")
    run.add_argument("--crop", help="center, stretch or letterbox")
    run.add_argument("--top-k", type=int, help="classes per result")
    run.add_argument("--threshold", type=float, help="drop classes scoring below this (0..1)")
    run.add_argument("--smoothing", type=int, help="average scores over this many frames")
    run.add_argument("--frames", help="newest (drop stale frames), all (every frame), or auto")
    run.add_argument("--max-frames", type=int, help="stop after this many frames (0: no limit)")
    run.add_argument("--log-level", help="debug, info, warning or error")
    run.set_defaults(handler=command_run)


def run_overrides(args: argparse.Namespace) -> dict[Path, tuple[Any, str]]:
    overrides = {path: (getattr(args, dest), flag) for dest, (path, flag) in RUN_OVERRIDES.items()
                 if getattr(args, dest) is not None}
    if args.source is not None:
        overrides[("source",)] = (source_from_argument(args.source), "--source")
    return overrides


def command_run(args: argparse.Namespace) -> int:
    config_file = find_config_file(args.config)
    config = load_config(config_file, run_overrides(args))
    logging.getLogger().setLevel(config.log_level.upper())
    if args.check_config:
        print(f"edge-infer: configuration OK ({config_file or 'built-in defaults'})", file=sys.stderr)
        return EXIT_OK
    log.info("edge-infer %s, configuration from %s", __version__, config_file or "built-in defaults")
    restore_stderr = route_native_stderr() if config.log_level != "debug" else None
    signals: Signals = args.signals
    try:
        overrides = run_overrides(args)
        with open_run(config, stop=signals.stop, reload=(config_file, lambda: load_config(config_file, overrides))) \
                as run:
            stats = run.execute()
    finally:
        if restore_stderr is not None:
            restore_stderr()
    outages = ""
    for camera in run.cameras:
        if camera.reconnecting is not None:
            health = camera.reconnecting.health()
            outages += (f", {f'camera {camera.name}: ' if camera.name else ''}{health.outages} source outage(s) "
                        f"({health.outage_s:.1f} s without frames)")
    failover = run.slot.failover
    if failover is not None and failover.health().failovers:
        lost = failover.health()
        outages += f", {lost.failovers} time(s) on the CPU fallback ({lost.lost_s:.1f} s without the Edge TPU)"
    log.info("done: %s%s", stats.summary(), outages)
    skipped = [camera.source for camera in run.cameras if camera.source.skipped]
    if skipped and signals.received is None:  # a looping source stopped by a signal is done
        for source in skipped:
            log.error("%d frame(s) of %s could not be read", source.skipped, source.description)
        return EXIT_SOURCE
    return EXIT_OK


# Native lines worth keeping at info level: LiteRT's word that XNNPACK runs.
NATIVE_INFO = ("XNNPACK delegate",)
# libcamera's own warnings and errors, "[0:03:58.519322256] [631] ERROR V4L2 v4l2_videodevice.cpp:1963 ...: Failed to
# start streaming: Broken pipe", severities padded to five characters (" WARN"), coloured with ANSI escapes unless
# LIBCAMERA_LOG_NO_COLOR is set (libcamera src/libcamera/base/log.cpp, LogOutput::write and log_severity_name).
LIBCAMERA_SEVERITY = re.compile(r"^\[\d+:\d\d:\d\d\.\d+\] \[\d+\]\s+(WARN|ERROR|FATAL)\s")
ANSI_COLOUR = re.compile(r"\x1b\[[\d;]*m")


def native_level(line: str) -> int:
    """The log level a native library's stderr line gets: libcamera's errors are warnings (a Pi camera's trouble is
    told there) and its warnings info (it warns of much that is harmless: a sensor missing from its database, a
    camera without a rotation control), LiteRT's XNNPACK line is info, the rest (libjpeg, FFmpeg, ...) debug."""
    libcamera = LIBCAMERA_SEVERITY.match(line)
    if libcamera:
        return logging.INFO if libcamera.group(1) == "WARN" else logging.WARNING
    return logging.INFO if any(k in line for k in NATIVE_INFO) else logging.DEBUG


def route_native_stderr() -> Callable[[], None]:
    """What native libraries write to file descriptor 2 (libjpeg's "Premature end of JPEG file", FFmpeg's
    "[mjpeg @ 0x...] overread 8", LiteRT's INFO lines) becomes our debug log lines, so stderr carries
    only edge-infer's own lines; with --log-level debug it is left alone. Returns what puts it back
    (after forwarding what is still in the pipe)."""
    ours = os.fdopen(os.dup(2), "w", buffering=1, errors="replace")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(ours)
    sys.stderr = ours
    # A crash's Python stacks go straight to the real stderr: the forwarder below dies with the process.
    faulthandler.enable(file=ours)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    native = logging.getLogger("edge_infer.native")

    def forward() -> None:
        with os.fdopen(read_end, errors="replace") as lines:
            for line in lines:
                text = ANSI_COLOUR.sub("", line).strip()
                if text:
                    native.log(native_level(text), "%s", text.removeprefix("INFO: "))

    forwarder = threading.Thread(target=forward, name="native-stderr", daemon=True)
    forwarder.start()

    def restore() -> None:
        os.dup2(ours.fileno(), 2)  # the pipe's last writer goes: the forwarder reads to its end
        forwarder.join(1.0)

    return restore
