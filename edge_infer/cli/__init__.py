"""`edge-infer`: the command line. Parses arguments, hands them to a command, prints its results, and maps
errors to exit statuses. The work itself lives in the packages (the run assembly, models, bench).

This module imports only the standard library: SIGINT/SIGTERM are caught before the commands' heavy
imports (OpenCV, LiteRT, numpy) start, so a signal at any moment ends the process cleanly.
"""

from __future__ import annotations

import argparse
import faulthandler
import io
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TextIO

from .. import __version__
from ..errors import EXIT_INTERNAL, EXIT_OK, EdgeInferError
from ..security.redact import redact

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
    from . import bench, doctor, models, run, teach, tune  # the heavy imports, once the signals are ours

    parser = argparse.ArgumentParser(prog="edge-infer", description="On-device image classification with "
                                     "MobileNet TFLite models.")
    parser.add_argument("--version", action="version", version=f"edge-infer {__version__}")
    parser.set_defaults(signals=signals)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_parser(commands)
    models.add_parser(commands)
    bench.add_parser(commands)
    tune.add_parser(commands)
    teach.add_parser(commands)
    doctor.add_parser(commands)
    return parser


class LowercaseLevelFormatter(logging.Formatter):
    """`edge-infer: warning: ...` on a terminal; no URL's password, whatever a library put in a message."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelname = record.levelname.lower()
        return redact(super().format(record))


# sd-daemon(3)'s priority prefixes: journald files a line that starts with one at that priority.
SYSLOG_PRIORITIES = ((logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


class JournalFormatter(logging.Formatter):
    """`<4>message` when stderr is the journal: `journalctl -p warning` then shows warnings and errors only, and
    the journal names the unit itself, so the program's name and the level in words would only repeat it."""

    def format(self, record: logging.LogRecord) -> str:
        priority = next((value for level, value in SYSLOG_PRIORITIES if record.levelno >= level), 7)
        text = redact(super().format(record))
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def stderr_is_journal(environ: Mapping[str, str], stderr: TextIO) -> bool:
    """systemd sets JOURNAL_STREAM to the device and inode of the stream it connected to stderr
    (systemd.exec(5)); a match means the journal reads our stderr, not a redirect that inherited the variable."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(stderr.fileno())
        return (status.st_dev, status.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


def configure_logging(environ: Mapping[str, str] = os.environ, stderr: TextIO | None = None) -> None:
    stream = stderr or sys.stderr
    handler = logging.StreamHandler(stream)
    if stderr_is_journal(environ, stream):
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
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


def log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """An exception Python cannot raise (in a __del__, e.g. picamera2's half-made DmaAllocator where the kernel has
    no DMA heap): one debug line, not the traceback Python prints by default."""
    log.debug("ignored in %r: %s: %s", unraisable.object, type(unraisable.exc_value).__name__, unraisable.exc_value)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    # A native library that aborts or crashes (libcamera when its camera vanishes; systemd's watchdog sends SIGABRT
    # to a hung process) would end the process without a word: this leaves every thread's Python stack on stderr,
    # i.e. in the journal, instead.
    faulthandler.enable()
    sys.unraisablehook = log_unraisable
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
