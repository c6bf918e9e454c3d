"""Damaged and hostile images and videos, made by the test from the real photos: each is skipped or
classified with one warning of ours, never ends a run early, and libjpeg's or FFmpeg's own lines stay
off stderr unless --log-level debug."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import error_lines, write_video

from edge_infer.sources.base import SourceHints
from edge_infer.sources.images import image_size, reduction

MODEL = "mobilenet_v1_0.25_128_quant.tflite"


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, followed by a tiny (wrong) image body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    body = zlib.compress(b"\x00" * 64)
    idat = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    return b"\x89PNG\r\n\x1a\n" + chunk + idat + b"\x00\x00\x00\x00IEND\xaeB`\x82"


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("edge-infer: warning:")]


def test_a_truncated_jpeg_is_classified_with_one_warning_of_ours(cli, tmp_path: Path, models: Path, images: Path):
    photo = (images / "parrot.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(photo[:-2000])
    done = cli("run", "--model", str(models / MODEL), "--source", str(tmp_path / "cut.jpg"))
    assert done.status == 0, done.stderr
    assert len(done.results) == 1
    [warning] = warnings(done.stderr)
    assert "is truncated" in warning
    assert "Premature end of JPEG file" not in done.stderr  # libjpeg's line is not ours


def test_a_header_claiming_a_billion_pixels_is_skipped_and_the_run_goes_on(cli, tmp_path: Path, models: Path,
                                                                           images: Path):
    (tmp_path / "a.png").write_bytes(png_header_claiming(40_000, 40_000))
    (tmp_path / "b.jpg").write_bytes((images / "parrot.jpg").read_bytes())
    done = cli("run", "--model", str(models / MODEL), "--source", str(tmp_path))
    assert [r["top"][0]["label"] for r in done.results] == ["macaw"]
    assert done.status == 4  # a frame could not be read
    [warning] = warnings(done.stderr)
    assert "40000x40000 is more than the 100 million pixels" in warning and "OpenCV" not in warning


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(cli, tmp_path: Path, models: Path, images: Path):
    big = cv2.resize(cv2.imread(str(images / "parrot.jpg")), (2600, 4720), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), big)
    data = path.read_bytes()
    assert image_size(data) == (2600, 4720)
    assert reduction((2600, 4720), SourceHints(128, 128, "center")) == 8  # 325x590: still twice 128
    assert reduction((2600, 4720), SourceHints(224, 224, "center")) == 4
    done = cli("run", "--model", str(models / MODEL), "--source", str(path))
    assert done.status == 0 and done.results[0]["top"][0]["label"] == "macaw"


def test_image_sizes_come_from_the_headers(images: Path):
    for name in ("parrot.jpg", "bird.bmp", "cat_720p.jpg"):
        data = (images / name).read_bytes()
        height, width = cv2.imread(str(images / name)).shape[:2]
        assert image_size(data) == (width, height)
    ok, png = cv2.imencode(".png", np.zeros((33, 77, 3), np.uint8))
    assert ok and image_size(png.tobytes()) == (77, 33)


def test_a_looping_directory_warns_once_per_bad_file_and_a_signal_ends_it_cleanly(tmp_path: Path, models: Path,
                                                                                  images: Path):
    (tmp_path / "a.jpg").write_bytes((images / "parrot.jpg").read_bytes())
    (tmp_path / "b.jpg").write_text("not a jpeg")
    config = tmp_path / "loop.yaml"
    config.write_text(f"source:\n  type: images\n  path: {tmp_path}\n  loop: true\n")
    process = subprocess.Popen([sys.executable, "-m", "edge_infer", "run", "--config", str(config), "--model",
                                str(models / MODEL)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # hundreds of passes
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert stderr.count("cannot read image") == 1 and error_lines(stderr) == []


# The native decoder's own line about the cut-off frame: libjpeg's, where the source decodes the video's JPEGs at a
# reduced scale (a 128x128 model, sources/opencv.py), FFmpeg's where the frames are needed whole (a 224x224 model).
@pytest.mark.parametrize(("model", "native_line"), [(MODEL, "Corrupt JPEG data"),
                                                    ("mobilenet_v2_1.0_224_quant.tflite", "[mjpeg @")])
def test_a_truncated_video_is_reported_once(cli, tmp_path: Path, models: Path, images: Path, model: str,
                                            native_line: str):
    path = tmp_path / "clip.avi"
    write_video(path, [cv2.resize(cv2.imread(str(images / "bird.bmp")), (256, 256))] * 40)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    done = cli("run", "--model", str(models / model), "--source", str(path))
    assert done.status == 0 and 10 < len(done.results) < 40
    [warning] = warnings(done.stderr)
    assert "of its 40 frames: it is truncated or damaged" in warning
    assert native_line not in done.stderr  # the decoder's lines are not ours...
    debug = cli("run", "--model", str(models / model), "--source", str(path), "--log-level", "debug")
    assert native_line in debug.stderr  # ...but there when asked for
