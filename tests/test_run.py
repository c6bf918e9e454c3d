"""The run assembly: it opens the classifier, the source, the outputs and the notifier, and closes what it
opened, in reverse order, at the end and on any error. And the layout: the inference core imports no
config reader, broker client or source backend."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import write_video

from edge_infer.config import Config, RunConfig
from edge_infer.errors import ConfigError, SourceError
from edge_infer.outputs.mqtt import MqttConfig
from edge_infer.outputs.registry import shows_frames
from edge_infer.pipeline.classifier import ModelConfig
from edge_infer.run import open_run
from edge_infer.schema import Origin
from edge_infer.sources.registry import build_source_spec
from edge_infer.values import Classification

CORE = ("edge_infer.pipeline.capture", "edge_infer.pipeline.preprocess", "edge_infer.pipeline.postprocess",
        "edge_infer.pipeline.classifier", "edge_infer.pipeline.stages", "edge_infer.pipeline.loop")
NOT_IN_THE_CORE = ("paho", "yaml", "edge_infer.config", "edge_infer.sources.registry", "edge_infer.sources.auto",
                   "edge_infer.sources.opencv", "edge_infer.sources.picamera2", "edge_infer.sources.images",
                   "edge_infer.outputs.mqtt")


def test_the_inference_core_imports_no_config_reader_broker_client_or_source_backend():
    code = (f"import sys\nfor m in {CORE!r}: __import__(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('paho', 'yaml') or m in {NOT_IN_THE_CORE!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def grey_video(path: Path, frames: int = 6, size: tuple[int, int] = (160, 120)) -> Path:
    """Frame i is all 40 * i."""
    return write_video(path, (np.full((size[1], size[0], 3), 40 * i, np.uint8) for i in range(frames)))


def open_descriptors_on(path: Path) -> int:
    """How many of this process's file descriptors point at `path` (an open video holds one)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:
            continue
    return count


def video_config(models: Path, video: Path, **changes) -> Config:
    source = build_source_spec({"type": "opencv", "device": str(video)}, Origin(), ("source",))
    return Config(model=ModelConfig(path=str(models / "mobilenet_v1_0.25_128_quant.tflite"), num_threads=1),
                  source=source, **changes)


class ListOutput:
    name = "list"

    def __init__(self) -> None:
        self.results: list[Classification] = []
        self.closed = False

    def publish(self, result: Classification) -> None:
        self.results.append(result)

    def close(self) -> None:
        self.closed = True


def test_an_output_that_cannot_open_closes_the_source_opened_before_it(models: Path, tmp_path: Path):
    video = grey_video(tmp_path / "clip.avi")
    config = video_config(models, video, outputs=("stdout", "mqtt"),
                          mqtt=MqttConfig(password_file=str(tmp_path / "missing"), username="u"))
    with pytest.raises(ConfigError, match="mqtt.password_file: cannot read") as caught, open_run(config, environ={}):
        pytest.fail("the run must not open")
    assert caught.value.exit_status == 2
    assert open_descriptors_on(video) == 0


def test_the_run_closes_its_source_at_the_end(models: Path, tmp_path: Path):
    video = grey_video(tmp_path / "clip.avi")
    collected = ListOutput()
    with open_run(video_config(models, video), outputs=[collected], environ={}) as run:
        assert open_descriptors_on(video) == 1  # the real source is open while the run is
        stats = run.execute()
        source = run.source  # held, so that only the run can close it
    assert stats.frames == 6 and [r.frame for r in collected.results] == [1, 2, 3, 4, 5, 6]
    assert open_descriptors_on(video) == 0 and source.description == f"opencv video file {video}"
    assert not collected.closed  # handed in: the caller's to close


def test_the_run_closes_its_source_when_the_run_fails(models: Path, tmp_path: Path):
    video = grey_video(tmp_path / "clip.avi")
    held = []  # a reference, so that garbage collection cannot close the source in the run's place
    with pytest.raises(SourceError), open_run(video_config(models, video), outputs=[ListOutput()], environ={}) as run:
        held.append(run.source)
        raise SourceError("the camera went away")
    assert open_descriptors_on(video) == 0


def test_every_frame_for_files_and_the_configured_frame_limit(models: Path, tmp_path: Path):
    video = grey_video(tmp_path / "clip.avi")
    config = video_config(models, video, run=RunConfig(max_frames=4))
    with open_run(config, outputs=[ListOutput()], environ={}) as run:
        assert run.every_frame  # a file: nothing is dropped
        assert run.execute().frames == 4


def test_the_notifier_joins_under_systemd(models: Path, tmp_path: Path):
    import socket

    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(address)
        systemd.settimeout(5)
        video = grey_video(tmp_path / "clip.avi", frames=2)
        with open_run(video_config(models, video), outputs=[ListOutput()],
                      environ={"NOTIFY_SOCKET": address}, stop=threading.Event()) as run:
            run.execute()
        messages = [systemd.recv(4096).decode() for _ in range(2)]
    assert messages[0].startswith("READY=1") and messages[1] == "STOPPING=1"


class WatchingOutput(ListOutput):
    """An output that also wants the pictures, as a live view does."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, tuple[int, ...], int]] = []

    def see_frame(self, frame) -> None:
        self.seen.append((frame.seq, frame.image.shape, int(frame.image[0, 0, 0])))


def test_outputs_that_watch_frames_see_each_frame_before_its_buffer_is_reused(models: Path, tmp_path: Path):
    video = grey_video(tmp_path / "clip.avi")
    watcher = WatchingOutput()
    with open_run(video_config(models, video), outputs=[watcher], environ={}) as run:
        run.execute()
    assert [seq for seq, _, _ in watcher.seen] == [1, 2, 3, 4, 5, 6]
    assert {shape for _, shape, _ in watcher.seen} == {(120, 160, 3)}  # the frame as captured, not the input
    levels = [level for _, _, level in watcher.seen]
    assert levels == sorted(levels) and levels[-1] > levels[0]  # each frame's own pixels (written 40 * i)
    assert [r.frame for r in watcher.results] == [1, 2, 3, 4, 5, 6]


def test_an_mjpeg_video_is_decoded_at_a_reduced_scale_only_when_no_output_shows_its_frames(
        models: Path, tmp_path: Path, caplog):
    video = grey_video(tmp_path / "clip.avi", size=(640, 480))
    caplog.set_level("INFO", logger="edge_infer.sources.opencv")
    with open_run(video_config(models, video), outputs=[ListOutput()], environ={}) as run:
        stats = run.execute()
    assert stats.frames == 6 and "decoding its JPEGs at 1/2 scale" in caplog.text
    caplog.clear()
    watcher = WatchingOutput()
    with open_run(video_config(models, video), outputs=[watcher], environ={}) as run:
        run.execute()
    assert {shape for _, shape, _ in watcher.seen} == {(480, 640, 3)} and "decoding its JPEGs" not in caplog.text


def test_the_outputs_that_show_the_pictures_are_known_before_they_open():
    assert not shows_frames(("stdout", "mqtt")) and shows_frames(("stdout", "web")) and shows_frames(("snapshots",))
