"""The systemd notify protocol (sd_notify), without libsystemd: one datagram per message to $NOTIFY_SOCKET.

READY=1 goes out once the model is loaded and the first frame is classified; WATCHDOG=1 only while
frames keep being classified, so a stuck camera or interpreter stops the pings and systemd restarts
the service (WatchdogSec in the unit). It also reads the board every 2 s, so that the throttling the firmware
reports is counted even when no output asks for the status, and puts the counts into the STATUS that
`systemctl status` shows and `edge-infer doctor` reads back.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from ..values import BoardHealth, Classification
from .board import SINCE_START, board_health, describe_events

log = logging.getLogger(__name__)

# raspberrypi-hwmon asks the firmware every 2 s and clears its "occurred" bits each time
# (raspberrypi/linux drivers/hwmon/raspberrypi-hwmon.c, get_values_poll): read it as often, or miss events.
BOARD_READ_S = 2.0


class SystemdNotifier:
    """Watches results like an output, and tells systemd about readiness and progress."""

    name = "systemd"

    def __init__(self, address: str, watchdog_interval_s: float | None,
                 clock: Callable[[], float] = time.monotonic,
                 board: Callable[[], BoardHealth] | None = board_health) -> None:
        # A leading "@" names a socket in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # Ping twice per watchdog period, as sd_watchdog_enabled(3) advises.
        self._ping_every = watchdog_interval_s / 2 if watchdog_interval_s else None
        self._clock = clock
        self._ready = False
        self._last_ping = float("-inf")
        self._board = board
        self._last_board_read = float("-inf")
        self._doing = ""  # what STATUS says the service does
        self._throttling: dict[str, int] = {}  # its throttle counts as STATUS last said them

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> SystemdNotifier | None:
        address = environ.get("NOTIFY_SOCKET")
        if not address:
            return None
        watchdog = None
        if environ.get("WATCHDOG_USEC") and environ.get("WATCHDOG_PID", str(os.getpid())) == str(os.getpid()):
            watchdog = int(environ["WATCHDOG_USEC"]) / 1e6
        return cls(address, watchdog)

    def notify(self, message: str) -> None:
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:  # systemd gone or socket unwritable: never a reason to stop classifying
            log.debug("sd_notify %r failed: %s", message, exc)

    def extend_start(self, seconds: float) -> None:
        """Before READY=1: a start that is slow for a good reason (the AI Camera's firmware upload) asks systemd for
        `seconds` more from now than TimeoutStartSec (sd_notify(3), EXTEND_TIMEOUT_USEC)."""
        if not self._ready:
            self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def publish(self, result: Classification) -> None:
        if not self._ready:
            self._ready = True
            self._doing = f"classifying with {result.model} on {result.backend}"
            self.notify(f"READY=1\nSTATUS={self._status()}")
        self.keepalive()

    def keepalive(self) -> None:
        """Feed the watchdog (at most twice a period): a result came, or the run is healthily waiting for one.
        Every BOARD_READ_S, read the board; new throttle counts go into STATUS."""
        now = self._clock()
        if self._ping_every is not None and now - self._last_ping >= self._ping_every:
            self._last_ping = now
            self.notify("WATCHDOG=1")
        if self._board is not None and now - self._last_board_read >= BOARD_READ_S:
            self._last_board_read = now
            counts = dict(self._board().throttle_events or {})
            if any(counts.values()) and counts != self._throttling:
                self._throttling = counts
                if self._ready:
                    self.notify(f"STATUS={self._status()}")

    def _status(self) -> str:
        if not any(self._throttling.values()):
            return self._doing
        return f"{self._doing}; throttling {SINCE_START}: {describe_events(self._throttling)}"

    def close(self) -> None:
        self.notify("STOPPING=1")
        self._socket.close()
