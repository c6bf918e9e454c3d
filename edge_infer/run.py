"""The run assembly: the one place that opens what a run needs, owns it, and closes it.

`open_run(config)` opens the classifier, the source, the outputs and the systemd notifier, in
that order, and closes what it opened in reverse order when the block ends or anything fails
(an output that cannot open after the camera did still closes the camera). `edge-infer run`,
the bench's pipeline measurement and every later feature build their runs here.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial

from .config import Config
from .errors import ModelError
from .models.files import resolve_model
from .models.pull import fetch_missing
from .outputs.base import FrameWatcher, Output, OutputContext
from .outputs.registry import open_output
from .pipeline.classifier import Classifier, LoadedModel, ModelConfig, load_classifier
from .pipeline.failover import Failover
from .pipeline.loop import run_pipeline
from .pipeline.stages import FrameClassifier, SwitchableStages
from .pipeline.stats import RunStats
from .service.board import board_health
from .service.guard import Reading, ThermalGuard, watch
from .service.systemd import SystemdNotifier
from .sources.base import Source, SourceHints
from .sources.reconnect import ReconnectingSource
from .sources.registry import open_source

log = logging.getLogger(__name__)


@dataclass
class GuardState:
    """The thermal guard's last step, for the stats."""

    level: int = 0
    model: str = ""
    temperature_c: float | None = None


@dataclass(frozen=True)
class Run:
    """What one run opened, and the loop over it. Made by `open_run`, which closes it."""

    config: Config
    stages: SwitchableStages
    source: Source
    outputs: tuple[Output, ...]
    stats: RunStats
    stop: threading.Event
    reader_done: threading.Event  # no capture thread is reading the source, so it may be closed
    guard: GuardState | None = None  # with run.guard enabled

    @property
    def classifier(self) -> Classifier:
        """The classifier in use (the thermal guard may have stepped to another model)."""
        return self.stages.current.classifier

    @property
    def every_frame(self) -> bool:
        """Classify every frame (files), or only the newest one (cameras and streams: never lag behind)."""
        frames = self.config.run.frames
        return frames == "all" or (frames == "auto" and not self.source.live)

    def snapshot(self) -> dict[str, object]:
        """The run's statistics, the source's health and the board's, as the MQTT stats message carries them."""
        info = self.classifier.info
        snapshot: dict[str, object] = {**self.stats.snapshot(), "model": info.name, "backend": info.backend}
        if isinstance(self.source, ReconnectingSource):
            snapshot["source"] = self.source.health().to_json_dict()
        if self.stages.failover is not None:
            snapshot["accelerator"] = self.stages.failover.health().to_json_dict()
        if self.guard is not None:
            snapshot["guard"] = {"level": self.guard.level, "model": self.guard.model,
                                 "temperature_c": self.guard.temperature_c}
        return {**snapshot, **board_health()}

    def step(self, level: int, reading: Reading) -> None:
        """The thermal guard's step: switch to the ladder's model at `level` (0: the configured one)."""
        models = [self.config.model.path, *self.config.run.guard.ladder]
        assert self.guard is not None
        why = "throttling" if reading.throttling else f"{reading.temperature_c:.1f} C"
        log.warning("thermal guard (%s): %s %s to %s", why, "stepping down" if level > self.guard.level else
                    "cool again, stepping up", self.guard.model, models[level])
        self.guard.level, self.guard.model, self.guard.temperature_c = level, models[level], reading.temperature_c
        self.stages.switch(models[level])

    def execute(self, *, outputs: Sequence[Output] = (), stop: threading.Event | None = None,
                stats: RunStats | None = None) -> RunStats:
        """Classify frames until the source ends, `run.max_frames` are done, or the stop event is set.

        `outputs` join the run's own for this call only (the bench's frame recorder); `stop` and
        `stats` replace the run's, so the bench can measure several rounds on one run.
        """
        self.reader_done.clear()
        return run_pipeline(self.source, self.stages, [*self.outputs, *outputs], stop or self.stop,
                            every_frame=self.every_frame, max_frames=self.config.run.max_frames,
                            stats=stats or self.stats, reader_done=self.reader_done, on_idle=self._idle)

    def _idle(self) -> None:
        """No frame this poll. While the source is reconnecting the process is healthy: feed the watchdog.
        A loop stuck in invoke(), or a capture thread stuck in a read, never gets here, and gets restarted."""
        if isinstance(self.source, ReconnectingSource) and self.source.reconnecting:
            for output in self.outputs:
                if isinstance(output, SystemdNotifier):
                    output.keepalive()


@contextmanager
def open_run(config: Config, *, stop: threading.Event | None = None, source: Source | None = None,
             outputs: Sequence[Output] | None = None, environ: Mapping[str, str] = os.environ) -> Iterator[Run]:
    """Open everything `config` asks for; a `source` or `outputs` handed in replace the configured ones
    and stay the caller's to close. The systemd notifier joins when `environ` has NOTIFY_SOCKET."""
    stop = stop or threading.Event()
    with ExitStack() as opened:
        mirror = environ.get("EDGE_INFER_MODEL_MIRROR")
        fetch_missing(config.model.path, config.model.models_dir, mirror)
        if config.model.delegate == "edgetpu" and config.model.fallback_model:  # now, not when the Coral fails
            try:
                fetch_missing(config.model.fallback_model, config.model.models_dir, mirror)
            except ModelError as exc:
                raise ModelError(f"model.fallback_model: {exc}") from exc
        classifier = load_classifier(config.model)
        info = classifier.info
        reader_done = threading.Event()
        reader_done.set()
        if source is None:
            hints = SourceHints(info.input.width, info.input.height, config.preprocess.crop)
            source = open_source(config.source, hints)
            if source.live:  # a camera or stream that fails mid-run is reopened, not the end of the run
                source = ReconnectingSource(source, partial(open_source, config.source, hints), stop)
            opened.callback(close_source, source, reader_done)
        stats = RunStats()
        run: Run | None = None
        context = OutputContext(info.name, info.backend, lambda: run.snapshot() if run else stats.snapshot())
        if outputs is None:
            outputs = []
            for name in config.outputs:
                output = open_output(name, config, context, outputs)
                opened.callback(output.close)
                outputs.append(output)
        notifier = SystemdNotifier.from_environment(environ)
        if notifier is not None:  # under systemd (Type=notify): readiness and watchdog pings ride on the results
            opened.callback(notifier.close)
            outputs = [*outputs, notifier]
        watchers = [output.see_frame for output in outputs if isinstance(output, FrameWatcher)]

        def stages_for(model_config: ModelConfig) -> FrameClassifier:
            return FrameClassifier(load_classifier(model_config), config.preprocess, config.postprocess,
                                   frame_watchers=watchers)

        stages = SwitchableStages(FrameClassifier(classifier, config.preprocess, config.postprocess,
                                                  frame_watchers=watchers),
                                  lambda model: stages_for(replace(config.model, path=model)), config.model.path,
                                  edgetpu_failover(config.model, info, stages_for))
        guard = config.run.guard
        run = Run(config, stages, source, tuple(outputs), stats, stop, reader_done,
                  GuardState(model=config.model.path) if guard.enabled else None)
        if guard.enabled:
            start_guard(run, environ)
        log.info("source: %s (%s)", source.description, "every frame" if run.every_frame else "newest frame")
        yield run


def edgetpu_failover(model: ModelConfig, loaded: LoadedModel,
                     stages_for: Callable[[ModelConfig], FrameClassifier]) -> Failover[FrameClassifier] | None:
    """With the Edge TPU and a fallback model configured, the failover between them; it starts out lost
    when the run could not open the Edge TPU and is already on the fallback."""
    if model.delegate != "edgetpu" or not model.fallback_model:
        return None
    fallback = resolve_model(model.fallback_model, model.models_dir)
    configured = resolve_model(model.path, model.models_dir)
    on_fallback = loaded.backend == "cpu" and loaded.path == str(fallback) and fallback != configured
    return Failover(lambda path: stages_for(replace(model, path=path, fallback_model=None)),
                    lambda: stages_for(replace(model, path=str(fallback), delegate="cpu")), model.fallback_model,
                    lost_at_start=on_fallback)


def start_guard(run: Run, environ: Mapping[str, str]) -> None:
    """The thermal guard's thread; its ladder's models are fetched now, not when the board is already hot."""
    guard = run.config.run.guard
    for model in guard.ladder:
        try:
            fetch_missing(model, run.config.model.models_dir, environ.get("EDGE_INFER_MODEL_MIRROR"))
        except ModelError as exc:
            log.warning("thermal guard: %s", exc)
    log.info("thermal guard: above %g C (or when the firmware throttles) stepping down through %s",
             guard.hot_c, ", ".join(guard.ladder))
    threading.Thread(target=watch, args=(guard, ThermalGuard(guard, len(guard.ladder) + 1), run.step, run.stop),
                     name="thermal-guard", daemon=True).start()


def close_source(source: Source, reader_done: threading.Event) -> None:
    if reader_done.is_set():
        source.close()
    else:  # a capture thread is blocked in a driver's read; closing under it could crash the driver
        log.debug("capture thread still reading; leaving %s to process exit", source.description)
