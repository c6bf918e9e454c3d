"""The systemd notify protocol (sd_notify), without libsystemd: one datagram per message to $NOTIFY_SOCKET.

READY=1 goes out once the model is loaded and the first frame is classified; WATCHDOG=1 only while
frames keep being classified, so a stuck camera or interpreter stops the pings and systemd restarts
the service (WatchdogSec in the unit).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from ..values import Classification

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Watches results like an output, and tells systemd about readiness and progress."""

    name = "systemd"

    def __init__(self, address: str, watchdog_interval_s: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # A leading "@" names a socket in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # Ping twice per watchdog period, as sd_watchdog_enabled(3) advises.
        self._ping_every = watchdog_interval_s / 2 if watchdog_interval_s else None
        self._clock = clock
        self._ready = False
        self._last_ping = float("-inf")

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

    def publish(self, result: Classification) -> None:
        if not self._ready:
            self._ready = True
            self.notify(f"READY=1\nSTATUS=classifying with {result.model} on {result.backend}")
        self.keepalive()

    def keepalive(self) -> None:
        """Feed the watchdog (at most twice a period): a result came, or the run is healthily waiting for one."""
        if self._ping_every is not None:
            now = self._clock()
            if now - self._last_ping >= self._ping_every:
                self._last_ping = now
                self.notify("WATCHDOG=1")

    def close(self) -> None:
        self.notify("STOPPING=1")
        self._socket.close()
