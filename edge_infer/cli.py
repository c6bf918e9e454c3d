"""`edge-infer`: the command line. Parses flags, wires the stages together, maps errors to exit statuses."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import cv2

from . import __version__
from .board import board_health
from .classifier import load_classifier
from .cli_models import add_commands
from .config import Config, find_config_file, load_config
from .errors import EXIT_INTERNAL, EXIT_OK, EXIT_SOURCE, EdgeInferError
from .outputs import OutputContext, open_outputs
from .pipeline import FrameClassifier, run_pipeline
from .schema import Path
from .sources import SourceHints, open_source, source_from_argument
from .stats import RunStats
from .systemd import SystemdNotifier

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-infer", description="On-device image classification with "
                                     "MobileNet TFLite models.")
    parser.add_argument("--version", action="version", version=f"edge-infer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    run.add_argument("--delegate", help="cpu or edgetpu")
    run.add_argument("--crop", help="center, stretch or letterbox")
    run.add_argument("--top-k", type=int, help="classes per result")
    run.add_argument("--threshold", type=float, help="drop classes scoring below this (0..1)")
    run.add_argument("--smoothing", type=int, help="average scores over this many frames")
    run.add_argument("--frames", help="newest (drop stale frames), all (every frame), or auto")
    run.add_argument("--max-frames", type=int, help="stop after this many frames (0: no limit)")
    run.add_argument("--log-level", help="debug, info, warning or error")
    run.set_defaults(handler=command_run)
    add_commands(commands)
    return parser


def run_overrides(args: argparse.Namespace) -> dict[Path, tuple[Any, str]]:
    overrides = {path: (getattr(args, dest), flag) for dest, (path, flag) in RUN_OVERRIDES.items()
                 if getattr(args, dest) is not None}
    if args.source is not None:
        overrides[("source",)] = (source_from_argument(args.source), "--source")
    return overrides


def stop_on_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM finish the current frame and stop; a second one kills the process the usual way."""

    def handle(signum: int, _frame: Any) -> None:
        log.info("%s: stopping after the current frame", signal.Signals(signum).name)
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def command_run(args: argparse.Namespace) -> int:
    config_file = find_config_file(args.config)
    config: Config = load_config(config_file, run_overrides(args))
    logging.getLogger().setLevel(config.log_level.upper())
    if args.check_config:
        print(f"edge-infer: configuration OK ({config_file or 'built-in defaults'})", file=sys.stderr)
        return EXIT_OK
    log.info("edge-infer %s, configuration from %s", __version__, config_file or "built-in defaults")
    stop = threading.Event()
    stop_on_signals(stop)
    classifier = load_classifier(config.model)
    info = classifier.info
    source = open_source(config.source, SourceHints(info.input.shape[2], info.input.shape[1], config.preprocess.crop))
    every_frame = config.run.frames == "all" or (config.run.frames == "auto" and not source.live)
    log.info("source: %s (%s)", source.description, "every frame" if every_frame else "newest frame")
    stats = RunStats()
    context = OutputContext(info.name, info.backend, lambda: {**stats.snapshot(), **board_health()})
    outputs = open_outputs(config, context)
    notifier = SystemdNotifier.from_environment()
    if notifier is not None:  # under systemd (Type=notify): readiness and watchdog pings ride on the results
        outputs.append(notifier)
    try:
        run_pipeline(source, FrameClassifier(classifier, config.preprocess, config.postprocess), outputs,
                     stop, every_frame=every_frame, max_frames=config.run.max_frames, stats=stats)
    finally:
        for output in outputs:
            output.close()
    log.info("done: %s", stats.summary())
    if source.skipped:
        log.error("%d frame(s) of %s could not be read", source.skipped, source.description)
        return EXIT_SOURCE
    return EXIT_OK


class LowercaseLevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.levelname = record.levelname.lower()
        return super().format(record)


def configure_logging() -> None:
    # OpenCV's own warnings (e.g. probing a missing camera) would duplicate our one-line errors.
    opencv_logging = getattr(cv2.utils, "logging", None)
    if opencv_logging is not None:
        opencv_logging.setLogLevel(opencv_logging.LOG_LEVEL_FATAL)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LowercaseLevelFormatter("edge-infer: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except BrokenPipeError:  # `edge-infer models list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return EXIT_OK
    except EdgeInferError as exc:
        log.error("%s", " ".join(str(exc).split()))  # one line, whatever a library put in its message
        return exc.exit_status
    except Exception as exc:  # a bug: still one line, the traceback only when asked for
        log.debug("internal error", exc_info=True)
        log.error("internal error: %s: %s (run with --log-level debug for the traceback, and please report it)",
                  type(exc).__name__, exc)
        return EXIT_INTERNAL
