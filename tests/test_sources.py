from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.errors import ConfigError, SourceError
from edge_infer.sources.auto import v4l2_devices
from edge_infer.sources.base import SourceHints
from edge_infer.sources.images import ImagesConfig, ImagesSource
from edge_infer.sources.opencv import FFMPEG_OPTIONS, OpenCVConfig, OpenCVSource, ffmpeg_options
from edge_infer.sources.registry import source_from_argument

HINTS = SourceHints(224, 224, "center")


def test_source_argument_is_told_apart_by_what_it_is(tmp_path: Path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "clip.mkv").write_bytes(b"x")
    assert source_from_argument("auto") == {"type": "auto"}
    assert source_from_argument("picamera2") == {"type": "picamera2"}
    assert source_from_argument("2") == {"type": "opencv", "device": 2}
    assert source_from_argument("/dev/video4") == {"type": "opencv", "device": "/dev/video4"}
    assert source_from_argument("rtsp://cam.local/stream") == {"type": "opencv", "device": "rtsp://cam.local/stream"}
    assert source_from_argument(str(tmp_path)) == {"type": "images", "path": str(tmp_path)}
    assert source_from_argument(str(tmp_path / "*.jpg")) == {"type": "images", "path": str(tmp_path / "*.jpg")}
    assert source_from_argument(str(tmp_path / "a.jpg")) == {"type": "images", "path": str(tmp_path / "a.jpg")}
    assert source_from_argument(str(tmp_path / "clip.mkv")) == {"type": "opencv", "device": str(tmp_path / "clip.mkv")}
    with pytest.raises(ConfigError, match="--source"):
        source_from_argument(str(tmp_path / "missing.mp4"))


def write_image(path: Path, value: int) -> None:
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def test_images_are_read_sorted_and_looped(tmp_path: Path):
    for name, value in (("b.png", 20), ("a.png", 10), ("c.png", 30)):
        write_image(tmp_path / name, value)
    (tmp_path / "notes.txt").write_text("not an image")
    source = ImagesSource(ImagesConfig(path=str(tmp_path), loop=True), HINTS)
    frames = [source.read() for _ in range(5)]
    assert [Path(f.path).name for f in frames] == ["a.png", "b.png", "c.png", "a.png", "b.png"]
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20, 30, 10, 20]
    assert [f.seq for f in frames] == [1, 2, 3, 4, 5]


def test_a_glob_that_matches_nothing(tmp_path: Path):
    with pytest.raises(SourceError, match="no image files"):
        ImagesSource(ImagesConfig(path=str(tmp_path / "*.png")), HINTS)


def write_video(path: Path, count: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(count):
        writer.write(np.full((24, 32, 3), 20 * i, np.uint8))
    writer.release()


def test_video_file_ends_after_its_last_frame(tmp_path: Path):
    write_video(tmp_path / "v.avi", 4)
    source = OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi")))
    assert not source.live
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
        frame.release()  # buffers go back to the pool and are reused
    assert len(frames) == 4 and [f.seq for f in frames] == [1, 2, 3, 4]
    source.close()


def test_video_file_loops(tmp_path: Path):
    write_video(tmp_path / "v.avi", 3)
    source = OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi"), loop=True))
    levels = []
    for _ in range(7):
        frame = source.read()
        levels.append(round(float(frame.image.mean()) / 20))
        frame.release()
    assert levels == [0, 1, 2, 0, 1, 2, 0]


def test_released_buffers_are_reused(tmp_path: Path):
    write_video(tmp_path / "v.avi", 3)
    source = OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi")))
    first = source.read()
    address = first.image.__array_interface__["data"][0]
    first.release()
    assert source.read().image.__array_interface__["data"][0] == address


def test_v4l2_devices_in_number_order_without_codec_nodes(tmp_path: Path):
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    dev.mkdir()
    for node, name in (("video10", "bcm2835-codec-decode"), ("video2", "USB Camera"), ("video0", "UVC Camera"),
                       ("video11", "USB Camera 2"), ("video12", "unicam-image"), ("video13", "unicam-embedded"),
                       ("video14", "rp1-cfe")):
        (dev / node).touch()
        (sysfs / node).mkdir(parents=True)
        (sysfs / node / "name").write_text(name + "\n")
    assert v4l2_devices(str(dev), str(sysfs)) == [str(dev / "video0"), str(dev / "video2"), str(dev / "video11")]


def test_rtsp_goes_over_tcp_unless_the_user_chose_otherwise():
    environ: dict[str, str] = {}
    ffmpeg_options("http://cam.local/stream.mjpg", environ)
    assert environ == {}
    ffmpeg_options("rtsp://user:pw@cam.local:554/stream1", environ)
    assert environ == {FFMPEG_OPTIONS: "rtsp_transport;tcp"}
    chosen = {FFMPEG_OPTIONS: "rtsp_transport;udp|stimeout;5000000"}
    ffmpeg_options("rtsp://cam.local/stream1", chosen)
    assert chosen[FFMPEG_OPTIONS] == "rtsp_transport;udp|stimeout;5000000"
