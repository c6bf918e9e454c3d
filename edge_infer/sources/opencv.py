"""OpenCV capture: USB/V4L2 cameras (index or /dev/videoN), RTSP/HTTP streams, and video files."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import ConfigError, SourceError
from ..security.credentials import read_secret, url_with_password
from ..security.redact import redact
from ..values import Frame
from .base import BufferPool, SourceHints
from .images import jpeg_scale, reduced_flag

log = logging.getLogger(__name__)

URL_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
DEVICE_PATTERN = re.compile(r"^/dev/video(\d+)$")
# FFmpeg's RTSP over UDP loses packets on Wi-Fi (grey, smeared frames); TCP is what cameras' apps use.
# OpenCV passes this variable's "key;value|key;value" options to FFmpeg when it opens a stream
# (opencv/opencv modules/videoio/src/cap_ffmpeg_impl.hpp, CvCapture_FFMPEG::open).
FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
RTSP_OVER_TCP = "rtsp_transport;tcp"
# A stream that stops sending makes read() fail after this long instead of blocking: the FFmpeg backend's
# interrupt callback enforces CAP_PROP_OPEN_TIMEOUT_MSEC / CAP_PROP_READ_TIMEOUT_MSEC (cap_ffmpeg_impl.hpp,
# grabFrame's interrupt_metadata.timeout_after_ms).
STREAM_OPEN_TIMEOUT_MS = 10_000
STREAM_READ_TIMEOUT_MS = 5_000
MJPG = cv2.VideoWriter.fourcc(*"MJPG")
# libjpeg's own orientation, as FFmpeg's decoder gives it: a camera's EXIF tag must not turn its video.
JPEG_FLAGS = cv2.IMREAD_IGNORE_ORIENTATION
EOI = b"\xff\xd9"  # a JPEG's last marker; its entropy-coded data cannot hold it (0xFF is stuffed there)


def jpeg_flags(scale: int) -> int:
    """cv2.imdecode's flags for a video's JPEG decoded at 1/`scale` (1: whole)."""
    return reduced_flag(scale) | JPEG_FLAGS


@dataclass(frozen=True)
class OpenCVConfig:
    # camera index, /dev/videoN, rtsp://... or http://... URL, or a video file
    device: int | str = field(default=0, metadata={"min": 0, "min_length": 1})
    width: int | None = field(default=None, metadata={"min": 1})  # capture size asked of a camera
    height: int | None = field(default=None, metadata={"min": 1})
    fps: float | None = field(default=None, metadata={"min": 0.1})
    loop: bool = False  # video files: start again at the end
    # streams: a file holding the password of the URL's user (rtsp://USER@host/...), so the URL in the
    # config holds none; ${CREDENTIALS_DIRECTORY}/NAME reads systemd's credential NAME
    password_file: str | None = field(default=None, metadata={"min_length": 1})


def is_camera(device: int | str) -> bool:
    return isinstance(device, int) or bool(DEVICE_PATTERN.match(device))


def backend_for(device: int | str) -> int:
    if is_camera(device):
        return cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    return cv2.CAP_FFMPEG


def ffmpeg_options(device: int | str, environ: MutableMapping[str, str]) -> None:
    """RTSP over TCP unless the user chose FFmpeg's capture options already."""
    if isinstance(device, str) and device.lower().startswith(("rtsp://", "rtsps://")):
        environ.setdefault(FFMPEG_OPTIONS, RTSP_OVER_TCP)


class OpenCVSource:
    def __init__(self, config: OpenCVConfig, hints: SourceHints | None = None) -> None:
        device = config.device
        self.live = is_camera(device) or bool(URL_PATTERN.match(str(device)))
        self._is_file = not self.live
        self.skipped = 0
        self._loop = config.loop and self._is_file
        self._pool = BufferPool()
        self._seq = 0
        self._pass_frames = 0  # frames read since the file (re)started
        self._warned_truncated = False
        self._device = device
        kind = "camera" if is_camera(device) else ("stream" if self.live else "video file")
        shown = redact(str(device))  # a stream's password never reaches a log line or an error
        self.description = f"opencv {kind} {shown}"
        if self._is_file and not os.path.isfile(str(device)):
            raise SourceError(f"video file '{device}' does not exist")
        if isinstance(device, str) and is_camera(device) and not os.path.exists(device):
            raise SourceError(f"cannot open camera {device}: no such device (is it plugged in? see 'ls /dev/video*')")
        if config.password_file is not None:
            if not (self.live and not is_camera(device)):
                raise ConfigError("source.password_file: only a stream's URL takes a password")
            device = url_with_password(str(device), read_secret(config.password_file, "source.password_file"),
                                       "source.password_file")
        params: list[int] = []
        if self.live and not is_camera(device):
            ffmpeg_options(device, os.environ)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_OPEN_TIMEOUT_MS,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_READ_TIMEOUT_MS]
        capture = cv2.VideoCapture(device, backend_for(device), params)
        if not capture.isOpened():
            capture.release()
            hint = {
                "camera": "is it plugged in, and is the user in the 'video' group?",
                "stream": "check the URL, credentials and that the stream is up",
                "video file": "is it a video OpenCV's FFmpeg can decode?",
            }[kind]
            raise SourceError(f"cannot open {kind} {shown}: {hint}")
        # No CAP_PROP_BUFFERSIZE: FFmpeg ignores it, and with V4L2 one buffer leaves the driver nothing to
        # fill while we read; the capture thread reads all the time, so queued frames never go stale.
        # Before the size: USB cameras send YUYV by default, which USB 2 carries at 720p only at a few
        # fps; MJPG gets the full frame rate. A camera without MJPG keeps its format. (OpenCV's V4L2
        # backend, modules/videoio/src/cap_v4l.cpp, applies CAP_PROP_FOURCC and the size with VIDIOC_S_FMT.)
        if is_camera(device) and (config.width or config.height) and \
                not capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG")):
            log.debug("%s: no MJPG, keeping the camera's format", self.description)
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, config.width), (cv2.CAP_PROP_FRAME_HEIGHT, config.height),
                            (cv2.CAP_PROP_FPS, config.fps)):
            if value is not None and not capture.set(prop, value):
                log.warning("%s: the device did not accept %s=%s", self.description, prop, value)
        self._capture = capture
        # An MJPEG file or stream is read as its JPEGs and decoded here, at the scale the model needs.
        self._jpeg_flags: int | None = None
        self._first: np.ndarray | None = None  # the frame decoded to try that
        self._size = (0, 0)  # the video's frame size, which the scale is chosen from
        if hints is not None and not is_camera(device) and int(capture.get(cv2.CAP_PROP_FOURCC)) == MJPG:
            width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            scale = jpeg_scale(width, height, hints)
            if scale > 1:
                self._read_jpegs(device, backend_for(device), params, scale, (width, height))

    def _read_jpegs(self, device: int | str, backend: int, params: list[int], scale: int,
                    size: tuple[int, int]) -> None:
        """Read the JPEGs themselves if the first one decodes to the video's `size` (scaled); if not, the video is
        opened again and FFmpeg decodes it, as without this. CAP_PROP_FORMAT -1 puts OpenCV's FFmpeg backend in raw
        mode (cap_ffmpeg_impl.hpp, CvCapture_FFMPEG::setProperty -> setRaw), where read() hands over each demuxed
        packet undecoded: for MJPEG, one whole JPEG. cv2.imdecode's IMREAD_REDUCED_COLOR_N has libjpeg scale it in
        the DCT (scale_denom), to ceil(size / scale). An interlaced video (old capture cards) holds two fields of
        half its height in each packet, which FFmpeg weaves into one frame (libavcodec/mjpegdec.c,
        ff_mjpeg_decode_sof: a JPEG under 3/4 of the video's height is a field); alone, the first is a squashed
        frame, so such a video is FFmpeg's."""
        flags = jpeg_flags(scale)
        if not self._capture.set(cv2.CAP_PROP_FORMAT, -1):  # a backend without raw packets: FFmpeg decodes
            return
        packet = self._capture.read()[1]
        image = cv2.imdecode(packet, flags) if packet is not None and packet.size else None
        expected = (-(-size[1] // scale), -(-size[0] // scale))
        if image is not None and image.shape[:2] == expected:
            self._jpeg_flags, self._first, self._size = flags, image, size
            self._pass_frames = 1
            log.info("%s: decoding its JPEGs at 1/%d scale, the model's input size or more", self.description, scale)
            return
        if image is None:
            log.debug("%s: its first packet is no JPEG libjpeg decodes; FFmpeg decodes the video", self.description)
        else:
            log.debug("%s: its first JPEG is not its %dx%d frame (interlaced fields?); FFmpeg decodes the video",
                      self.description, *size)
        self._capture.release()
        self._capture = cv2.VideoCapture(device, backend, params)
        if not self._capture.isOpened():
            raise SourceError(f"cannot open {self.description} again after reading its first frame")

    def read(self) -> Frame | None:
        if self._jpeg_flags is not None:
            return self._read_jpeg()
        buffer = self._pool.take()
        ok, image = self._capture.read(buffer)
        if not ok and self._is_file and self._seq > 0:
            self._check_complete()
        if not ok and self._loop and self._seq > 0:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._pass_frames = 0
            ok, image = self._capture.read(buffer)
        if not ok:
            if buffer is not None:
                self._pool.give_back(buffer)
            if self._is_file:
                if self._seq == 0:
                    raise SourceError(f"cannot decode any frame of video file '{self._device}'")
                return None
            raise SourceError(f"{self.description} stopped delivering frames (unplugged, or the stream ended)")
        self._seq += 1
        self._pass_frames += 1
        pool = self._pool
        return Frame(seq=self._seq, image=image, ts=time.time(), release=lambda: pool.give_back(image))

    def _read_jpeg(self) -> Frame | None:
        """The next JPEG, decoded at the source's scale. A JPEG that does not decode is passed over and counted
        (FFmpeg's decoder would end the video there), as the images source passes over a broken photo."""
        assert self._jpeg_flags is not None
        image, self._first = self._first, None
        while image is None:
            ok, packet = self._capture.read()
            if not ok and self._loop and self._seq > 0:  # each pass has a frame: the first one decoded at open
                self._check_complete()
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._pass_frames = 0
                ok, packet = self._capture.read()
            if not ok:
                if self._is_file:
                    self._check_complete()
                    return None
                raise SourceError(f"{self.description} stopped delivering frames (unplugged, or the stream ended)")
            self._pass_frames += 1
            # OpenCV allocates the image (imdecode takes no destination); it is freed once the frame is prepared.
            image = cv2.imdecode(packet, self._jpeg_flags) if packet.size else None
            if image is None and packet.size and EOI not in packet[-4096:].tobytes():
                # The last JPEG of a cut-off file: decoded as far as it goes, as FFmpeg's decoder does (the cut is
                # reported once the file ends, `_check_complete`).
                image = cv2.imdecode(np.append(packet, np.frombuffer(EOI, np.uint8)), self._jpeg_flags)
            if image is None:
                self.skipped += 1
                if self.skipped == 1 or self.skipped % 1000 == 0:
                    log.warning("%s: a frame that is no decodable JPEG was passed over (%d so far)",
                                self.description, self.skipped)
        self._seq += 1
        return Frame(seq=self._seq, image=image, ts=time.time())

    def retarget(self, hints: SourceHints) -> bool:
        """Read as its JPEGs, the next one is decoded at the scale the new model needs; decoded by FFmpeg,
        frames are whole, which serves any model."""
        if self._jpeg_flags is None:
            return True
        scale = jpeg_scale(*self._size, hints)
        flags = jpeg_flags(scale)
        if flags != self._jpeg_flags:
            self._jpeg_flags = flags
            log.info("%s: now decoding its JPEGs %s, for the model's %dx%d input", self.description,
                     f"at 1/{scale} scale" if scale > 1 else "whole", hints.width, hints.height)
        return True

    def _check_complete(self) -> None:
        """A file that ends before the frame count its header gives is cut off: say so, once."""
        expected = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if not self._warned_truncated and expected > 0 and self._pass_frames < expected - 1:
            self._warned_truncated = True
            log.warning("video file '%s' ended after %d of its %d frames: it is truncated or damaged",
                        self._device, self._pass_frames, expected)

    def close(self) -> None:
        self._capture.release()


def open_opencv(config: OpenCVConfig, hints: SourceHints) -> OpenCVSource:
    return OpenCVSource(config, hints)
