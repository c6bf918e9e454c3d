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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial

from .config import Config
from .models.pull import fetch_missing
from .outputs.base import FrameWatcher, Output, OutputContext
from .outputs.registry import open_output
from .pipeline.classifier import Classifier, load_classifier
from .pipeline.loop import run_pipeline
from .pipeline.stages import FrameClassifier
from .pipeline.stats import RunStats
from .service.board import board_health
from .service.systemd import SystemdNotifier
from .sources.base import Source, SourceHints
from .sources.reconnect import ReconnectingSource
from .sources.registry import open_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """What one run opened, and the loop over it. Made by `open_run`, which closes it."""

    config: Config
    classifier: Classifier
    stages: FrameClassifier
    source: Source
    outputs: tuple[Output, ...]
    stats: RunStats
    stop: threading.Event
    reader_done: threading.Event  # no capture thread is reading the source, so it may be closed

    @property
    def every_frame(self) -> bool:
        """Classify every frame (files), or only the newest one (cameras and streams: never lag behind)."""
        frames = self.config.run.frames
        return frames == "all" or (frames == "auto" and not self.source.live)

    def snapshot(self) -> dict[str, object]:
        """The run's statistics, the source's health and the board's, as the MQTT stats message carries them."""
        snapshot: dict[str, object] = self.stats.snapshot()
        if isinstance(self.source, ReconnectingSource):
            snapshot["source"] = self.source.health().to_json_dict()
        return {**snapshot, **board_health()}

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
        fetch_missing(config.model.path, config.model.models_dir, environ.get("EDGE_INFER_MODEL_MIRROR"))
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
                output = open_output(name, config, context)
                opened.callback(output.close)
                outputs.append(output)
        notifier = SystemdNotifier.from_environment(environ)
        if notifier is not None:  # under systemd (Type=notify): readiness and watchdog pings ride on the results
            opened.callback(notifier.close)
            outputs = [*outputs, notifier]
        watchers = [output.see_frame for output in outputs if isinstance(output, FrameWatcher)]
        stages = FrameClassifier(classifier, config.preprocess, config.postprocess, frame_watchers=watchers)
        run = Run(config, classifier, stages, source, tuple(outputs), stats, stop, reader_done)
        log.info("source: %s (%s)", source.description, "every frame" if run.every_frame else "newest frame")
        yield run


def close_source(source: Source, reader_done: threading.Event) -> None:
    if reader_done.is_set():
        source.close()
    else:  # a capture thread is blocked in a driver's read; closing under it could crash the driver
        log.debug("capture thread still reading; leaving %s to process exit", source.description)
