"""`edge-infer`: the command line. Parses arguments, hands them to a command, prints its results, and maps
errors to exit statuses. The work itself lives in the packages (the run assembly, models, bench)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import cv2

from .. import __version__
from ..errors import EXIT_INTERNAL, EXIT_OK, EdgeInferError
from . import bench, models, run

log = logging.getLogger("edge_infer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-infer", description="On-device image classification with "
                                     "MobileNet TFLite models.")
    parser.add_argument("--version", action="version", version=f"edge-infer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_parser(commands)
    models.add_parser(commands)
    bench.add_parser(commands)
    return parser



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
