import logging
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import read_all, side_by_side, write_video
from mjpeg import MjpegServer

from edge_infer.errors import ConfigError, SourceError
from edge_infer.sources.auto import v4l2_devices
from edge_infer.sources.base import SourceHints
from edge_infer.sources.images import ImagesConfig, ImagesSource, jpeg_scale
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


def grey_video(path: Path, count: int, width: int = 32, height: int = 24) -> None:
    """Frame i is all 20 * i."""
    write_video(path, (np.full((height, width, 3), 20 * i, np.uint8) for i in range(count)))


def test_video_file_ends_after_its_last_frame(tmp_path: Path):
    grey_video(tmp_path / "v.avi", 4)
    source = OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi")))
    assert not source.live
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
        frame.release()  # buffers go back to the pool and are reused
    assert len(frames) == 4 and [f.seq for f in frames] == [1, 2, 3, 4]
    source.close()


def test_video_file_loops(tmp_path: Path):
    grey_video(tmp_path / "v.avi", 3)
    source = OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi"), loop=True))
    levels = []
    for _ in range(7):
        frame = source.read()
        levels.append(round(float(frame.image.mean()) / 20))
        frame.release()
    assert levels == [0, 1, 2, 0, 1, 2, 0]


def test_released_buffers_are_reused(tmp_path: Path):
    grey_video(tmp_path / "v.avi", 3)
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


def test_jpeg_scale_keeps_what_the_model_sees_at_least_its_input_size():
    # 640x480, centre crop: the model sees 480x480; 1/2 leaves 240 >= 224 and 128, 1/4 would leave 120
    assert jpeg_scale(640, 480, SourceHints(224, 224, "center")) == 2
    assert jpeg_scale(640, 480, SourceHints(128, 128, "center")) == 2
    assert jpeg_scale(1920, 1080, SourceHints(224, 224, "center")) == 4  # 1080 / 4 = 270; / 8 = 135 is too few
    assert jpeg_scale(1920, 1080, SourceHints(128, 128, "center")) == 8
    assert jpeg_scale(640, 480, SourceHints(224, 224, "stretch")) == 2  # both sides whole: 320x240
    assert jpeg_scale(640, 480, SourceHints(160, 160, "letterbox")) == 4  # it lands as 160x120: 1/4 leaves that
    assert jpeg_scale(320, 240, SourceHints(224, 224, "center")) == 1
    assert jpeg_scale(4000, 3000, SourceHints(224, 224, "center", full_size=True)) == 1  # shown, or cut into regions


def write_scene_video(path: Path, images: Path, count: int, fourcc: str = "MJPG") -> None:
    """A 640x480 video of two real photos panning, so every frame differs."""
    scene = cv2.resize(side_by_side(images, "bird.bmp", "parrot.jpg"), (1280, 480))
    write_video(path, (np.ascontiguousarray(scene[:, i * 40: i * 40 + 640]) for i in range(count)), fourcc)


def test_an_mjpeg_video_is_decoded_at_the_scale_the_model_needs(tmp_path: Path, images: Path):
    write_scene_video(tmp_path / "v.avi", images, 8)
    whole = read_all(OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi"))))
    halved = read_all(OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi")), HINTS))
    assert len(whole) == len(halved) == 8
    assert {frame.shape for frame in whole} == {(480, 640, 3)} and {frame.shape for frame in halved} == {(240, 320, 3)}
    for full, half in zip(whole, halved, strict=True):  # the same picture, in order: a box filter's worth apart
        expected = cv2.resize(full, (320, 240), interpolation=cv2.INTER_AREA)
        assert np.abs(expected.astype(np.int16) - half).mean() < 3
    assert np.abs(halved[0].astype(np.int16) - halved[4]).mean() > 10  # ...and the frames do differ


def test_an_mjpeg_video_is_read_whole_when_its_frames_are_shown(tmp_path: Path, images: Path):
    write_scene_video(tmp_path / "v.avi", images, 3)
    shown = SourceHints(224, 224, "center", full_size=True)
    assert {frame.shape for frame in read_all(OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi")), shown))} \
        == {(480, 640, 3)}


def test_a_video_in_another_codec_is_decoded_by_ffmpeg_whole(tmp_path: Path, images: Path):
    write_scene_video(tmp_path / "v.avi", images, 4, fourcc="XVID")
    frames = read_all(OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi")), HINTS))
    assert len(frames) == 4 and {frame.shape for frame in frames} == {(480, 640, 3)}


def interlaced_avi(path: Path, frame: np.ndarray, count: int) -> None:
    """An MJPEG AVI as old capture cards write it: each packet holds a frame's two fields, each a JPEG of half its
    height. Written by hand (OpenCV's writer has one JPEG a packet): RIFF AVI with avih, strh, strf, movi, idx1."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return tag + struct.pack("<I", len(data)) + data + b"\0" * (len(data) % 2)

    height, width = frame.shape[:2]
    packet = b"".join(cv2.imencode(".jpg", np.ascontiguousarray(frame[first::2]))[1].tobytes() for first in (0, 1))
    header = chunk(b"avih", struct.pack("<14I", 100_000, 0, 0, 0x10, count, 0, 1, 0, width, height, 0, 0, 0, 0))
    stream = chunk(b"strh", b"vidsMJPG" + struct.pack("<IHHIIIIIIIIhhhh", 0, 0, 0, 0, 1, 10, 0, count, 0,
                                                         0xFFFFFFFF, 0, 0, 0, width, height))
    stream += chunk(b"strf", struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", width * height * 3,
                                         0, 0, 0, 0))
    headers = chunk(b"LIST", b"hdrl" + header + chunk(b"LIST", b"strl" + stream))
    stride = 8 + len(packet) + len(packet) % 2
    movi = chunk(b"LIST", b"movi" + chunk(b"00dc", packet) * count)
    index = chunk(b"idx1", b"".join(b"00dc" + struct.pack("<III", 0x10, 4 + i * stride, len(packet))
                                    for i in range(count)))
    body = b"AVI " + headers + movi + index
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_an_interlaced_mjpeg_video_is_woven_by_ffmpeg_not_squashed(tmp_path: Path, images: Path):
    frame = cv2.resize(cv2.imread(str(images / "parrot.jpg")), (640, 480))
    interlaced_avi(tmp_path / "v.avi", frame, 3)
    frames = read_all(OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi")), HINTS))
    assert len(frames) == 3 and {image.shape for image in frames} == {(480, 640, 3)}  # not a 320x120 first field
    assert np.abs(frames[0].astype(np.int16) - frame).mean() < 15  # the two fields woven back into the photo


def test_an_mjpeg_video_is_decoded_for_a_model_switched_in(tmp_path: Path, caplog):
    grey_video(tmp_path / "v.avi", 6, 1280, 720)
    source = OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi")), SourceHints(128, 128, "center"))
    assert source.read().image.shape == (180, 320, 3)  # 1/4: the centred 180x180 still covers 128x128
    with caplog.at_level(logging.INFO, logger="edge_infer.sources.opencv"):
        assert source.retarget(SourceHints(224, 224, "center"))
    assert [source.read().image.shape for _ in range(2)] == [(360, 640, 3)] * 2  # 1/2 for 224, not scaled up
    assert "now decoding its JPEGs at 1/2 scale, for the model's 224x224 input" in caplog.text
    source.retarget(SourceHints(128, 128, "center"))
    assert source.read().image.shape == (180, 320, 3)
    source.close()


def test_photos_are_decoded_for_a_model_switched_in(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "big.jpg"), np.full((1024, 1024, 3), 90, np.uint8))
    source = ImagesSource(ImagesConfig(path=str(tmp_path / "big.jpg"), loop=True), SourceHints(128, 128, "center"))
    assert source.read().image.shape == (256, 256, 3)  # twice the input
    assert source.retarget(SourceHints(224, 224, "center"))
    assert source.read().image.shape == (512, 512, 3)


def test_an_mjpeg_video_loops_at_its_reduced_scale(tmp_path: Path):
    grey_video(tmp_path / "v.avi", 3, 640, 480)
    source = OpenCVSource(OpenCVConfig(device=str(tmp_path / "v.avi"), loop=True), HINTS)
    frames = [source.read() for _ in range(7)]
    assert [round(float(frame.image.mean()) / 20) for frame in frames] == [0, 1, 2, 0, 1, 2, 0]
    assert [frame.seq for frame in frames] == [1, 2, 3, 4, 5, 6, 7] and frames[0].image.shape == (240, 320, 3)
    source.close()


def test_a_broken_jpeg_in_an_mjpeg_video_is_passed_over_and_counted(tmp_path: Path, caplog):
    path = tmp_path / "v.avi"
    grey_video(path, 5, 640, 480)
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 3) if data[i: i + 3] == b"\xff\xd8\xff"]
    assert len(starts) == 5
    data[starts[2]: starts[2] + 200] = bytes(200)  # the third frame's JPEG header is gone
    path.write_bytes(bytes(data))
    source = OpenCVSource(OpenCVConfig(device=str(path)), HINTS)
    frames = read_all(source)
    assert [round(float(frame.mean()) / 20) for frame in frames] == [0, 1, 3, 4]
    assert source.skipped == 1
    assert "a frame that is no decodable JPEG was passed over (1 so far)" in caplog.text


def test_an_mjpeg_stream_is_decoded_at_the_scale_the_model_needs(images: Path):
    server = MjpegServer(cv2.resize(cv2.imread(str(images / "parrot.jpg")), (640, 480)), fps=30)
    server.start()
    try:
        for hints, shape in ((HINTS, (240, 320, 3)), (SourceHints(224, 224, "center", full_size=True), (480, 640, 3))):
            source = OpenCVSource(OpenCVConfig(device=server.url), hints)
            frames = [source.read() for _ in range(3)]
            assert [frame.image.shape for frame in frames] == [shape] * 3 and [f.seq for f in frames] == [1, 2, 3]
            source.close()
    finally:
        server.stop()
