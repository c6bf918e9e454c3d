"""`edge-infer`: the command line. Parses arguments, hands them to a command, prints its results, and maps
errors to exit statuses. The work itself lives in the packages (the run assembly, models, bench).

This module imports only the standard library: SIGINT/SIGTERM are caught before the commands' heavy
imports (OpenCV, LiteRT, numpy) start, so a signal at any moment ends the process cleanly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .. import __version__
from ..errors import EXIT_INTERNAL, EXIT_OK, EdgeInferError

log = logging.getLogger("edge_infer")


class Signals:
    """SIGINT and SIGTERM from the start of main(): the first sets `stop` (a run finishes its frame and
    ends, exit 0); a second one kills the process the usual way."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: str | None = None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        log.info("%s: stopping after the current frame", self.received)
        self.stop.set()
        signal.signal(signum, signal.SIG_DFL)


def build_parser(signals: Signals) -> argparse.ArgumentParser:
    from . import bench, doctor, models, run, tune  # the heavy imports, once the signals are ours

    parser = argparse.ArgumentParser(prog="edge-infer", description="On-device image classification with "
                                     "MobileNet TFLite models.")
    parser.add_argument("--version", action="version", version=f"edge-infer {__version__}")
    parser.set_defaults(signals=signals)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_parser(commands)
    models.add_parser(commands)
    bench.add_parser(commands)
    tune.add_parser(commands)
    doctor.add_parser(commands)
    return parser


class LowercaseLevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.levelname = record.levelname.lower()
        return super().format(record)


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LowercaseLevelFormatter("edge-infer: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def quiet_opencv() -> None:
    """OpenCV's own warnings (e.g. probing a missing camera) would duplicate our one-line errors."""
    import cv2

    opencv_logging = getattr(cv2.utils, "logging", None)
    if opencv_logging is not None:
        opencv_logging.setLogLevel(opencv_logging.LOG_LEVEL_FATAL)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    signals = Signals()
    signals.install()
    try:
        args = build_parser(signals).parse_args(argv)
        quiet_opencv()
        return int(args.handler(args))
    except KeyboardInterrupt:  # a SIGINT in the instant before the handlers were installed
        return EXIT_OK
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
