"""The run assembly: the one place that opens what a run needs, owns it, and closes it.

`open_run(config)` opens one classifier per distinct model, each camera's source, the outputs and
the systemd notifier, in that order, and closes what it opened in reverse order when the block ends or anything fails
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
from .errors import SourceError
from .models.pull import MIRROR_ENV, fetch_missing
from .outputs.base import CameraLayout, Output, OutputContext, Peers, frame_watchers
from .outputs.registry import open_output, shows_frames
from .pipeline.cameras import CameraConfig, RegionConfig, cameras_of, regions_of
from .pipeline.classifier import Classifier, LoadedModel
from .pipeline.imx500 import Imx500Classifier
from .pipeline.loop import Feed, run_feeds
from .pipeline.postprocess import PostprocessConfig
from .pipeline.preprocess import PreprocessConfig
from .pipeline.selection import ModelSelection
from .pipeline.stages import CameraStages, FrameClassifier, ModelSlot
from .pipeline.stats import RunStats
from .service.board import board_health
from .service.guard import GuardWatch
from .service.reload import ConfigWatch
from .service.systemd import SystemdNotifier
from .sources.base import Source, SourceHints, no_extension
from .sources.reconnect import FIRST_RETRY_S, LONGEST_RETRY_S, ReconnectingSource
from .sources.registry import open_source
from .teach.config import teach_directory
from .teach.desk import TeachDesk, places_of
from .teach.in_use import IN_USE_FILE, read_in_use, with_in_use
from .values import CameraStatus, RegionStatus, RunStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Camera:
    """One camera of a run: its source, the stages of its regions, and its own statistics."""

    name: str | None  # None: the plain `source:` run
    source: Source
    stages: CameraStages
    stats: RunStats
    every_frame: bool  # every frame (files), or only the newest one (cameras and streams: never lag behind)
    reconnecting: ReconnectingSource | None = None  # the source itself, when it is live and so reconnects

    @property
    def streaming(self) -> bool:
        return self.reconnecting is None or not self.reconnecting.reconnecting


@dataclass(frozen=True)
class Run:
    """What one run opened, and the loop over it. Made by `open_run`, which closes it."""

    config: Config
    cameras: tuple[Camera, ...]
    slot: ModelSlot  # the configured model's: the thermal guard's steps and the Edge TPU failover act on it
    outputs: tuple[Output, ...]
    stats: RunStats
    stop: threading.Event
    reader_done: threading.Event  # no capture thread is reading a source, so they may be closed
    guard: GuardWatch | None = None  # with run.guard enabled
    notifier: SystemdNotifier | None = None  # under systemd (NOTIFY_SOCKET): also among the outputs

    @property
    def source(self) -> Source:
        """The first camera's source: the only one of a plain `source:` run."""
        return self.cameras[0].source

    @property
    def classifier(self) -> Classifier:
        """The configured model's classifier in use (the thermal guard may have stepped to another model)."""
        return self.slot.classifier

    @property
    def every_frame(self) -> bool:
        return self.cameras[0].every_frame

    def status(self) -> RunStatus:
        """The run's counts, the model and backend in use, the sources' health and the board's; from any thread."""
        info = self.classifier.info
        plain = self.cameras[0].name is None
        return RunStatus(
            info.name, info.backend, self.stats.counts(),
            source=self.cameras[0].reconnecting.health() if plain and self.cameras[0].reconnecting else None,
            accelerator=self.slot.failover.health() if self.slot.failover is not None else None,
            guard=self.guard.status() if self.guard is not None else None,
            board=board_health(), cameras=() if plain else tuple(camera_status(camera) for camera in self.cameras))

    def execute(self, *, outputs: Sequence[Output] = (), stop: threading.Event | None = None,
                stats: RunStats | None = None) -> RunStats:
        """Classify frames until every source ends, `run.max_frames` are done, or the stop event is set.

        `outputs` join the run's own for this call only (the bench's frame recorder); `stop` and
        `stats` replace the run's, so the bench can measure several rounds on one run.
        """
        self.reader_done.clear()
        feeds = [Feed(camera.source, camera.stages, camera.every_frame, camera.name, camera.stats)
                 for camera in self.cameras]
        return run_feeds(feeds, [*self.outputs, *outputs], stop or self.stop, max_frames=self.config.run.max_frames,
                         stats=stats or self.stats, reader_done=self.reader_done, on_idle=self._idle)

    def _idle(self) -> None:
        """No frame this poll. While a source is reconnecting the process is healthy: feed the watchdog.
        A loop stuck in invoke(), or a capture thread stuck in a read, never gets here, and gets restarted."""
        if self.notifier is not None and not all(camera.streaming for camera in self.cameras):
            self.notifier.keepalive()


def camera_status(camera: Camera) -> CameraStatus:
    """One camera's part of the status: its counts, its source's health, its regions' models in use."""
    return CameraStatus(str(camera.name), camera.stats.counts(),
                        camera.reconnecting.health() if camera.reconnecting is not None else None,
                        {region.region: RegionStatus(region.classifier.info.name, region.classifier.info.backend)
                         for region in camera.stages.regions if region.region is not None})


@contextmanager
def open_run(config: Config, *, stop: threading.Event | None = None, source: Source | None = None,
             outputs: Sequence[Output] | None = None, environ: Mapping[str, str] = os.environ,
             reload: tuple[str | None, Callable[[], Config]] | None = None) -> Iterator[Run]:
    """Open everything `config` asks for; a `source` or `outputs` handed in replace the configured ones
    and stay the caller's to close. The systemd notifier joins when `environ` has NOTIFY_SOCKET.
    `reload` makes it the service's run: (the config file or None, what reads it again). The taught models
    the live page put in use are laid over the configuration, and a change of the models either names is
    applied live; with the web output, the page's Teach panel is open."""
    stop = stop or threading.Event()
    with ExitStack() as opened:
        config_watch = None
        desk = None
        if reload is not None:
            in_use = teach_directory(config.teach, environ) / IN_USE_FILE
            config = with_in_use(config, read_in_use(in_use))
            read_again = reload[1]
            config_watch = ConfigWatch([*filter(None, [reload[0]]), in_use],
                                       lambda: with_in_use(read_again(), read_in_use(in_use)),
                                       lambda applied, new: apply_models(run, selection, applied, new), config)
            if outputs is None and "web" in config.outputs:
                desk = TeachDesk(in_use.parent, config.teach, places_of(config), config_watch.current,
                                 config_watch.check)
                opened.callback(desk.close)
        mirror = environ.get(MIRROR_ENV)
        cameras = cameras_of(config)
        guard = config.run.guard
        if guard.enabled and config.model.delegate in ("hailo", "imx500"):  # its steps are CPU models: they would
            # load the CPU the accelerator spares, and cannot run a .hef or an .rpk
            log.info("thermal guard: off, the model runs on the %s",
                     "Hailo" if config.model.delegate == "hailo" else "AI Camera's sensor")
            guard = replace(guard, enabled=False)
        selection = ModelSelection(
            config.model, ladder=guard.ladder if guard.enabled else (),
            regions=[(f"cameras.{camera.name}.regions.{region.name}", region.model) for camera in cameras
                     for region in camera.regions if region.model is not None],
            fetch=lambda name: fetch_missing(name, config.model.models_dir, mirror))
        slots = selection.open()
        slot = slots[None]
        if slot.classifier.on_sensor:  # the AI Camera's subdevice: released once its camera is closed (LIFO)
            opened.callback(slot.classifier.close)
        # Before the sources: a camera's start may need more time than systemd allows (the AI Camera's firmware).
        notifier = SystemdNotifier.from_environment(environ)
        if notifier is not None:
            opened.callback(notifier.close)
        reader_done = threading.Event()
        reader_done.set()
        shown = shows_frames(config.outputs) if outputs is None else bool(frame_watchers(outputs))
        opened_sources = ([(source, None, None)] if source is not None else
                          open_sources(config, cameras, slot, stop, opened, reader_done,
                                       notifier.extend_start if notifier is not None else no_extension, shown=shown))
        reconnecting = {camera.name: live for camera, (_, live, _) in zip(cameras, opened_sources, strict=True)
                        if live is not None}
        stats = RunStats()
        run: Run | None = None
        info = slot.classifier.info
        layout = tuple(CameraLayout(camera.name, {region.name: region.box for region in camera.regions})
                       for camera in config.cameras)
        context = OutputContext(lambda: run.status() if run else RunStatus(info.name, info.backend, stats.counts()),
                                layout, lambda name: name not in reconnecting or not reconnecting[name].reconnecting,
                                desk)
        if outputs is None:
            peers = Peers(config.outputs)
            for name in config.outputs:
                output = open_output(name, getattr(config, name, None), context, peers)
                opened.callback(output.close)
                peers.opened.append(output)
            outputs = peers.opened
        if notifier is not None:  # under systemd (Type=notify): readiness and watchdog pings ride on the results
            outputs = [*outputs, notifier]
        watchers = frame_watchers(outputs)
        frames = config.run.frames
        run_cameras = []
        for camera, (camera_source, _, hints) in zip(cameras, opened_sources, strict=True):
            name = camera.name or None  # None: the plain `source:` run, whose results carry no camera
            # A camera without regions gets frames scaled for its model; a model switched in with a larger input
            # (a reload, a taught model) has them scaled for it, not scaled up. Regions get whole frames.
            fit = partial(fit_source, camera_source, hints) if hints is not None and not camera.regions \
                and hints.network is None else None
            regions = [FrameClassifier(slots[region.model], region_preprocess(config, region),
                                       region_postprocess(config, region), box=region.box, camera=name,
                                       region=region.name or None, on_new_model=fit)
                       for region in regions_of(camera)]
            stages = CameraStages(regions, [watcher.see_frame if name is None else
                                            partial(watcher.see_frame, camera=name) for watcher in watchers])
            every_frame = frames == "all" or (frames == "auto" and not camera_source.live)
            run_cameras.append(Camera(name, camera_source, stages, RunStats(), every_frame,
                                      reconnecting.get(camera.name)))
        watch = None
        if guard.enabled:  # its ladder's models were fetched by the model selection, at start
            watch = GuardWatch(guard, [config.model.path, *guard.ladder], slot.switch)
            opened.callback(watch.close)
            watch.start()
        run = Run(config, tuple(run_cameras), slot, tuple(outputs), stats, stop, reader_done, watch, notifier)
        if config_watch is not None:
            opened.callback(config_watch.close)
            config_watch.start()
        for camera in run.cameras:
            log.info("%ssource: %s (%s)", f"camera {camera.name}: " if camera.name else "", camera.source.description,
                     "every frame" if camera.every_frame else "newest frame")
        yield run


def apply_models(run: Run, selection: ModelSelection, applied: Config, new: Config) -> None:
    """Move every region whose model changed from `applied` to `new`, between two of its frames (ConfigWatch)."""
    if new.model.path != applied.model.path and "imx500" in (new.model.delegate, applied.model.delegate):
        log.warning("model.path is now %s: the AI Camera's network changes when the service restarts", new.model.path)
    elif new.model.path != applied.model.path:  # the configured model: as the thermal guard switches it
        log.info("model.path is now %s: switching to it", new.model.path)
        selection.slot_for(None).switch(new.model.path)
    regions = {(camera.name or "", classifier.region or ""): classifier
               for camera in run.cameras for classifier in camera.stages.regions}
    for camera in cameras_of(new):
        for region in regions_of(camera):
            classifier = regions.get((camera.name, region.name))
            if classifier is None:
                log.warning("camera %s, region %s is new in the config: it starts with the next restart",
                            camera.name, region.name)
                continue
            slot = selection.slot_for(region.model)
            if slot is not classifier.slot:
                where = f"camera {camera.name}, region {region.name}" if camera.name else "the source"
                log.info("%s: now %s", where, slot.classifier.info.name)
                classifier.use(slot)
    selection.keep(classifier.next_slot for classifier in regions.values())


def region_preprocess(config: Config, region: RegionConfig) -> PreprocessConfig:
    return replace(config.preprocess, crop=region.preprocess.crop or config.preprocess.crop)


def region_postprocess(config: Config, region: RegionConfig) -> PostprocessConfig:
    post = config.postprocess
    return PostprocessConfig(top_k=post.top_k if region.top_k is None else region.top_k,
                             threshold=post.threshold if region.threshold is None else region.threshold,
                             smoothing=post.smoothing if region.smoothing is None else region.smoothing,
                             unknown_below=post.unknown_below if region.unknown_below is None
                             else region.unknown_below)


def open_sources(config: Config, cameras: Sequence[CameraConfig], slot: ModelSlot, stop: threading.Event,
                 opened: ExitStack, reader_done: threading.Event, extend_start: Callable[[float], None], *,
                 shown: bool) -> list[tuple[Source, ReconnectingSource | None, SourceHints]]:
    """Each camera's source, the same source when it reconnects, and the hints it was opened with: a live one
    that fails mid-run is reopened, not the end of the run. Of several cameras, one that cannot be opened at
    start is tried again like one lost mid-run; only when none opens is it the end (exit 4). `shown`: an output
    shows the pictures, so they are delivered whole."""
    sources: list[tuple[Source, ReconnectingSource | None, SourceHints]] = []
    errors: list[SourceError] = []
    for camera in cameras:
        hints = source_hints(config, camera, slot, extend_start, shown)
        reopen = partial(open_source, camera.source)
        try:
            source = reopen(hints)
        except SourceError as exc:
            if len(cameras) == 1:
                raise
            errors.append(exc)
            log.warning("camera %s: %s; trying again every %g-%g s", camera.name, exc, FIRST_RETRY_S, LONGEST_RETRY_S)
            source = live = ReconnectingSource(None, reopen, stop, hints=hints,
                                               description=f"{camera.source.type} source", camera=camera.name)
        else:
            live = ReconnectingSource(source, reopen, stop, hints=hints, camera=camera.name or None) \
                if source.live else None
            source = live or source
        opened.callback(close_source, source, reader_done)
        sources.append((source, live, hints))
    if errors and len(errors) == len(cameras):
        raise SourceError(f"no camera could be opened: {'; '.join(str(error) for error in errors)}")
    return sources


def source_hints(config: Config, camera: CameraConfig, slot: ModelSlot, extend_start: Callable[[float], None],
                 shown: bool) -> SourceHints:
    """What a camera's source is told of the model. On the AI Camera, the network on its sensor and the window it
    classifies: the one region that runs the configured model (config.check_sensor_network sees to that)."""
    classifier = slot.classifier
    info = classifier.info
    if isinstance(classifier, Imx500Classifier):
        region = next((region for region in regions_of(camera) if region.model is None), None)
        if region is not None:
            crop = region_preprocess(config, region).crop
            return SourceHints(info.input.width, info.input.height, crop, classifier.network, region.box, extend_start)
    # A camera with regions needs its whole frame: with crop letterbox Picamera2 delivers the main
    # stream and sets no ScalerCrop (sources/picamera2.py, which cites picamera2's configuration and
    # ScalerCrop code), not a lores stream cropped and scaled for one model.
    crop = "letterbox" if camera.regions else config.preprocess.crop
    return SourceHints(info.input.width, info.input.height, crop, extend_start=extend_start,
                       full_size=shown or bool(camera.regions))


def fit_source(source: Source, opened_for: SourceHints, model: LoadedModel) -> None:
    """The camera's frames, scaled for the model it opened with, now serve `model`, on the capture thread."""
    source.retarget(replace(opened_for, width=model.input.width, height=model.input.height))


def close_source(source: Source, reader_done: threading.Event) -> None:
    if reader_done.is_set():
        source.close()
    else:  # a capture thread is blocked in a driver's read; closing under it could crash the driver
        log.debug("capture thread still reading; leaving %s to process exit", source.description)
