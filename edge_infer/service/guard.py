"""The thermal guard: step down to a cheaper model before the firmware throttles, and back up once cool.

A Pi 4 or 5 without a fan reaches its soft limit (80 C, `vcgencmd get_throttled` bit 3) within minutes
of full load; the firmware then lowers the clock for everything on the board. Stepping to a cheaper
MobileNet first (a smaller width or resolution multiplier costs ~alpha^2 * rho^2) keeps the frame rate
and leaves the clock alone. Hysteresis keeps it from flapping: down at `hot_c` (or when the firmware
reports throttling), up again only after `cooldown_s` at or below `cool_c`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..values import GuardStatus
from .board import THERMAL_ZONE, cpu_temperature_c, throttled_flags

log = logging.getLogger(__name__)

THROTTLING_NOW = ("throttled", "frequency_capped", "soft_temperature_limit")


@dataclass(frozen=True)
class GuardConfig:
    enabled: bool = False
    hot_c: float = field(default=75.0, metadata={"min": 30.0, "max": 110.0})  # step down at or above
    cool_c: float = field(default=65.0, metadata={"min": 20.0, "max": 100.0})  # step up at or below ...
    cooldown_s: float = field(default=60.0, metadata={"min": 0.0})  # ... for this long
    interval_s: float = field(default=5.0, metadata={"min": 0.05, "max": 3600.0})  # how often to look
    # Cheaper models, in order, after model.path (names in the model directories, or paths).
    ladder: tuple[str, ...] = ("mobilenet_v1_0.75_192_quant", "mobilenet_v1_0.5_160_quant",
                               "mobilenet_v1_0.25_128_quant")
    thermal_zone: str = THERMAL_ZONE

    def __post_init__(self) -> None:
        if self.cool_c >= self.hot_c:
            raise ValueError(f"cool_c ({self.cool_c:g}) must be below hot_c ({self.hot_c:g})")


@dataclass(frozen=True)
class Reading:
    temperature_c: float | None
    throttling: bool  # the firmware is limiting the clock now


class ThermalGuard:
    """Decides the ladder level (0 = the configured model) from readings; pure, the clock passed in."""

    def __init__(self, config: GuardConfig, levels: int) -> None:
        self._config = config
        self._top = levels - 1
        self.level = 0
        self._cool_since: float | None = None

    def update(self, reading: Reading, now: float) -> int:
        hot = reading.throttling or (reading.temperature_c is not None and reading.temperature_c >= self._config.hot_c)
        cool = not reading.throttling and reading.temperature_c is not None and \
            reading.temperature_c <= self._config.cool_c
        if hot:
            self._cool_since = None
            self.level = min(self.level + 1, self._top)
        elif cool and self.level > 0:
            if self._cool_since is None:
                self._cool_since = now
            elif now - self._cool_since >= self._config.cooldown_s:
                self._cool_since = now  # the next step up waits a whole cool-down again
                self.level -= 1
        else:
            self._cool_since = None
        return self.level


def read_board(config: GuardConfig) -> Reading:
    flags = throttled_flags() or {}
    return Reading(cpu_temperature_c(config.thermal_zone), any(flags.get(name) for name in THROTTLING_NOW))


def watch(config: GuardConfig, guard: ThermalGuard, step: Callable[[int, Reading], None], stop: threading.Event,
          read: Callable[[GuardConfig], Reading] = read_board, clock: Callable[[], float] = time.monotonic) -> None:
    """The guard's thread: every interval, read the board and ask for a step when the level changes."""
    while not stop.wait(config.interval_s):
        reading = read(config)
        before = guard.level
        if guard.update(reading, clock()) != before:
            step(guard.level, reading)


class GuardWatch:
    """The thermal guard as a run component: its thread, started by the run assembly and stopped and joined
    when the run closes; `switch` moves the configured model's slot to a ladder model between frames."""

    def __init__(self, config: GuardConfig, models: Sequence[str], switch: Callable[[str], None],
                 read: Callable[[GuardConfig], Reading] = read_board) -> None:
        self._config = config
        self._models = tuple(models)  # the configured model, then the ladder
        self._switch = switch
        self._read = read
        self._guard = ThermalGuard(config, len(self._models))
        self._status = GuardStatus(0, self._models[0])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=watch, args=(config, self._guard, self._step, self._stop, read),
                                        name="thermal-guard", daemon=True)

    def start(self) -> None:
        log.info("thermal guard: above %g C (or when the firmware throttles) stepping down through %s",
                 self._config.hot_c, ", ".join(self._models[1:]))
        self._thread.start()

    def status(self) -> GuardStatus:
        return self._status

    def _step(self, level: int, reading: Reading) -> None:
        """Switch to the ladder's model at `level` (0: the configured one)."""
        why = "throttling" if reading.throttling else f"{reading.temperature_c:.1f} C"
        log.warning("thermal guard (%s): %s %s to %s", why, "stepping down" if level > self._status.level else
                    "cool again, stepping up", self._status.model, self._models[level])
        self._status = GuardStatus(level, self._models[level], reading.temperature_c)
        self._switch(self._models[level])

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._config.interval_s + 1.0)
