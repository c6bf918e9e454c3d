"""Snapshots on label changes (outputs: [snapshots]): files in a bounded directory and the retained JPEG on MQTT,
through the real CLI on an image sequence written by the test, and the parts in process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from broker import Broker, Subscriber
from conftest import error_lines, need

from edge_infer.errors import ConfigError
from edge_infer.outputs.base import CameraLayout, OutputContext
from edge_infer.outputs.snapshots import SNAPSHOT_NAME, FrameRing, SnapshotOutput, SnapshotsConfig, prune
from edge_infer.values import Box, Class, Classification, Frame, RunStatus, Timing

CONTEXT = OutputContext(lambda: RunStatus("m", "cpu"))  # an output's run: model m on the CPU

MODEL = "mobilenet_v1_0.25_128_quant.tflite"
DEVICE = "snapdev"
# What MobileNet V1 0.25 128 sees in each photo, and the frame's height at width 512 (the BMPs are decoded whole;
# parrot.jpg, 512x929, at 1/2 scale). Grace Hopper scores 0.15 ("academic gown"): below min_score, no snapshot.
EXPECTED = {"macaw": 929 / 512, "chickadee": 343 / 512, "daisy": 340 / 512}


class BinarySubscriber(Subscriber):
    """broker.Subscriber keeps text; a JPEG is not UTF-8, so keep the bytes (as latin-1, one char per byte)."""

    def _on_message(self, _client, _userdata, message) -> None:
        from broker import Message

        with self._lock:
            self.messages.append(Message(message.topic, message.payload.decode("latin-1"), bool(message.retain)))


def payload_bytes(message) -> bytes:
    return message.payload.encode("latin-1")


def sequence(tmp: Path, images: Path) -> Path:
    """Four photos in order; looped, the confident label changes three times per pass."""
    folder = tmp / "sequence"
    folder.mkdir()
    for n, name in enumerate(["parrot.jpg", "grace_hopper.bmp", "bird.bmp", "sunflower.bmp"]):
        shutil.copy(images / name, folder / f"{n}_{name}")
    return folder


def start_run(tmp: Path, models: Path, source: Path, snapshots: str, outputs: str = "[snapshots]",
              extra: str = "") -> subprocess.Popen:
    config = tmp / "config.yaml"
    config.write_text(f"outputs: {outputs}\nmodel:\n  num_threads: 1\nsource:\n  type: images\n  path: {source}\n"
                      f"  loop: true\nsnapshots:\n{snapshots}\n{extra}")
    return subprocess.Popen([sys.executable, "-m", "edge_infer", "run", "--config", str(config), "--model",
                             str(models / MODEL)], cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def snapshot_files(directory: Path) -> list[str]:
    if not directory.is_dir():  # not made yet: the run is starting
        return []
    return sorted(p.name for p in directory.iterdir() if SNAPSHOT_NAME.fullmatch(p.name))


def label_of(name: str) -> str:
    return name.split("_", 2)[2].removesuffix(".jpg")


def test_label_changes_make_snapshots_in_a_bounded_directory_and_on_mqtt(tmp_path: Path, models: Path,
                                                                        images: Path):
    need("mosquitto")
    broker = Broker(tmp_path)
    broker.start()
    subscriber = BinarySubscriber(broker.port)
    directory = tmp_path / "snaps"
    process = start_run(tmp_path, models, sequence(tmp_path, images),
                        f"  directory: {directory}\n  max_files: 3\n  min_score: 0.5",
                        outputs="[snapshots, mqtt]",  # snapshots first: the publisher finds MQTT whatever the order
                        extra=f"mqtt:\n  port: {broker.port}\n  device: {DEVICE}\n  stats_interval: 0\n")
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        while len(seen) < 12:  # four passes' worth of snapshots came and (all but 3) went
            assert time.monotonic() < deadline, (seen, process.poll())
            current = snapshot_files(directory)
            assert len(current) <= 3, current  # bounded at every moment we look
            seen.update(current)
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
        snapshot = subscriber.wait_for(lambda m: m.topic == f"edge-infer/{DEVICE}/snapshot")
    finally:
        if process.poll() is None:
            process.kill()
        subscriber.close()
        broker.stop()
    final = snapshot_files(directory)
    assert len(final) == 3
    assert final == sorted(seen | set(final))[-3:]  # the oldest were removed, the newest kept
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]  # written atomically: no leftovers
    assert {label_of(name) for name in seen} == set(EXPECTED)  # never the doubtful "academic gown"
    for name in final:
        image = cv2.imread(str(directory / name))
        assert image is not None, name
        # The frame the label came from, not a neighbour: each photo has its own shape.
        assert image.shape[0] / image.shape[1] == pytest.approx(EXPECTED[label_of(name)], abs=0.01), name
        assert np.median(image[:15, :50]) < 60  # the caption box is drawn on it
    # On MQTT: the JPEG itself, binary (retained: the next test).
    jpeg = payload_bytes(snapshot[-1])
    assert jpeg.startswith(b"\xff\xd8") and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None


def test_the_newest_snapshot_stays_retained_for_home_assistant(tmp_path: Path, models: Path, images: Path):
    need("mosquitto")
    broker = Broker(tmp_path)
    broker.start()
    process = start_run(tmp_path, models, sequence(tmp_path, images), f"  directory: {tmp_path / 'snaps'}",
                        outputs="[mqtt, snapshots]", extra=f"mqtt:\n  port: {broker.port}\n  device: {DEVICE}\n")
    try:
        time.sleep(4)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
        late = BinarySubscriber(broker.port)  # connects after the run ended: only retained messages remain
        try:
            retained = late.wait_for(lambda m: m.topic == f"edge-infer/{DEVICE}/snapshot")
            image_config = late.wait_for(lambda m: m.topic.startswith("homeassistant/image/"))
        finally:
            late.close()
    finally:
        if process.poll() is None:
            process.kill()
        broker.stop()
    assert retained[-1].retain
    assert cv2.imdecode(np.frombuffer(payload_bytes(retained[-1]), np.uint8), cv2.IMREAD_COLOR) is not None
    assert f'"image_topic": "edge-infer/{DEVICE}/snapshot"' in image_config[-1].payload


def test_a_directory_that_cannot_be_made_is_a_config_error(cli, tmp_path: Path, models: Path, images: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = tmp_path / "bad.yaml"
    config.write_text(f"outputs: [stdout, snapshots]\nsource:\n  type: images\n  path: {images / 'parrot.jpg'}\n"
                      f"snapshots:\n  directory: {blocker / 'snaps'}\n")
    done = cli("run", "--config", str(config), "--model", str(models / MODEL))
    assert done.status == 2 and done.results == []
    [line] = error_lines(done.stderr)
    assert f"snapshots.directory: cannot create '{blocker / 'snaps'}': Not a directory" in line


# --- the parts, in process -----------------------------------------------------------------------

def result(label: str, score: float, frame: int) -> Classification:
    return Classification(frame, 1_700_000_000.0 + frame / 10, "m", "cpu", (Class(1, label, score),),
                          Timing(0.1, 1.0, 0.1))


def picture(seq: int) -> Frame:
    image = np.full((64, 96, 3), seq % 256, np.uint8)
    return Frame(seq=seq, image=image, ts=0.0)


def test_only_confident_changes_are_saved_each_with_its_own_frame(tmp_path: Path):
    published: list[bytes] = []
    output = SnapshotOutput(SnapshotsConfig(directory=str(tmp_path), min_score=0.5), CONTEXT,
                            publisher=lambda jpeg, _result: published.append(jpeg))
    try:
        plan = [("cat", 0.9), ("cat", 0.9), ("dog", 0.3), ("cat", 0.8), ("dog", 0.7), ("dog", 0.9), ("bird", 0.6)]
        for seq, (label, score) in enumerate(plan, start=10):
            output.see_frame(picture(seq))
            output.publish(result(label, score, seq))
            time.sleep(0.1)  # one at a time through the queue
    finally:
        output.close()
    files = snapshot_files(tmp_path)
    # cat (frame 10); the doubtful dog (0.3) is no change, so cat at 13 is none either; dog (14); bird (16).
    assert [(name.split("_")[1], label_of(name)) for name in files] == [("000010", "cat"), ("000014", "dog"),
                                                                          ("000016", "bird")]
    for name in files:  # the pixels of the very frame: its value is its sequence number (below the caption)
        image = cv2.imread(str(tmp_path / name))
        assert abs(int(np.median(image[-4:, -4:])) - int(name.split("_")[1])) <= 3
    assert len(published) == 3 and all(jpeg.startswith(b"\xff\xd8") for jpeg in published)


def test_each_camera_and_region_has_its_own_changes_files_and_picture(tmp_path: Path):
    # Two cameras: the yard with two regions (left and right halves), the porch whole. The same label in
    # another region is a change of its own; each snapshot is its camera's frame with the region drawn on.
    layout = (CameraLayout("yard", {"left": Box(0, 0, 0.5, 1), "right": Box(0.5, 0, 0.5, 1)}), CameraLayout("porch"))
    published: list[tuple[str | None, str | None]] = []
    output = SnapshotOutput(SnapshotsConfig(directory=str(tmp_path), min_score=0.5),
                            OutputContext(lambda: RunStatus("m", "cpu"), layout),
                            publisher=lambda _jpeg, result: published.append((result.camera, result.region)))
    try:
        for camera, level in (("yard", 40), ("porch", 200)):
            output.see_frame(Frame(seq=5, image=np.full((480, 640, 3), level, np.uint8), ts=0.0), camera=camera)
        for camera, region in (("yard", "left"), ("yard", "right"), ("porch", None), ("yard", "left")):
            output.publish(replace(result("cat", 0.9, 5), camera=camera, region=region))
            time.sleep(0.15)
    finally:
        output.close()
    files = snapshot_files(tmp_path)
    assert sorted(name.split("_", 2)[2] for name in files) == ["porch_cat.jpg", "yard_left_cat.jpg",
                                                               "yard_right_cat.jpg"]  # the 2nd left cat: no change
    assert sorted(published, key=str) == sorted([("yard", "left"), ("yard", "right"), ("porch", None)], key=str)
    right = cv2.imread(str(tmp_path / next(name for name in files if "_yard_right_" in name)))
    porch = cv2.imread(str(tmp_path / next(name for name in files if "_porch_" in name)))
    assert abs(int(np.median(porch[-10:, -10:])) - 200) <= 3 and abs(int(np.median(right[-20:, 100:200])) - 40) <= 3
    # The right region's outline (orange, BGR 0 200 255) runs down the middle; the porch has none.
    def orange(image: np.ndarray) -> float:  # the most orange column near the middle
        return float(np.all(np.abs(image[200:, 314:326].astype(int) - (0, 200, 255)) < 60, axis=2).mean(axis=0).max())

    assert orange(right) > 0.3 and orange(porch) == 0.0


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path: Path):
    release = threading.Event()
    output = SnapshotOutput(SnapshotsConfig(directory=str(tmp_path), min_score=0.0), CONTEXT,
                            publisher=lambda _jpeg, _result: release.wait(10))  # a publisher that hangs
    try:
        output.see_frame(picture(0))
        output.publish(result("label0", 0.9, 0))
        time.sleep(0.3)  # the worker took it and hangs in the publisher
        started = time.monotonic()
        for seq in range(1, 10):
            output.see_frame(picture(seq))
            output.publish(result(f"label{seq}", 0.9, seq))
        assert time.monotonic() - started < 0.5  # the inference thread never waited
        # One in the worker (stuck in the publisher), two queued, the other seven dropped.
        assert output.dropped == 7
    finally:
        release.set()
        output.close()
    assert output.saved == 3


def test_the_ring_finds_the_results_frame_or_the_next_one():
    ring = FrameRing(4)
    for seq in range(1, 7):
        ring.put(picture(seq))
    found = ring.copy_of(5)
    assert found is not None and found[1] == 5 and int(found[0][0, 0, 0]) == 5
    found = ring.copy_of(1)  # overwritten: the first one after it
    assert found is not None and found[1] == 3
    buffers = list(map(id, ring._buffers))
    for seq in range(7, 20):
        ring.put(picture(seq))
    assert list(map(id, ring._buffers)) == buffers  # reused: no allocation per frame


def test_prune_removes_the_oldest_of_ours_by_count_and_by_size(tmp_path: Path):
    names = [f"20250101-0000{n:02d}.000_{n:06d}_cat.jpg" for n in range(6)]
    for name in names:
        (tmp_path / name).write_bytes(b"x" * 1000)
    (tmp_path / "holiday.jpg").write_bytes(b"y" * 100_000)  # not ours: never touched
    assert prune(tmp_path, max_files=4, max_bytes=10**9) == names[:2]
    assert prune(tmp_path, max_files=100, max_bytes=2500) == names[2:4]
    assert sorted(p.name for p in tmp_path.iterdir()) == [*names[4:], "holiday.jpg"]
    assert prune(tmp_path, max_files=0, max_bytes=10**9) == names[4:]
    assert [p.name for p in tmp_path.iterdir()] == ["holiday.jpg"]


def test_a_snapshot_larger_than_the_size_bound_is_still_kept(tmp_path: Path):
    output = SnapshotOutput(SnapshotsConfig(directory=str(tmp_path), max_megabytes=0.1),
                            CONTEXT)
    try:
        noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)  # a JPEG far over 100 kB
        for seq, label in enumerate(["cat", "dog"]):
            output.see_frame(Frame(seq=seq, image=noise, ts=0.0))
            output.publish(result(label, 0.9, seq))
            time.sleep(0.5)
    finally:
        output.close()
    [kept] = snapshot_files(tmp_path)  # the newest, alone: the older one made room for it
    assert label_of(kept) == "dog" and (tmp_path / kept).stat().st_size > 100_000


def test_an_unwritable_directory_is_refused(tmp_path: Path):
    if os.geteuid() == 0:
        target = tmp_path / "file"
        target.write_text("")
    else:
        target = tmp_path / "locked"
        target.mkdir()
        target.chmod(0o500)
    with pytest.raises(ConfigError, match="snapshots.directory"):
        SnapshotOutput(SnapshotsConfig(directory=str(target)), CONTEXT)


def test_the_default_directory_is_the_services_state_directory():
    from edge_infer.outputs.snapshots import default_directory

    assert default_directory({"STATE_DIRECTORY": "/var/lib/edge-infer"}) == Path("/var/lib/edge-infer/snapshots")
    assert default_directory({"XDG_DATA_HOME": "/d"}) == Path("/d/edge-infer/snapshots")
