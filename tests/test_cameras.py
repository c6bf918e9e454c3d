"""Several cameras and named regions in one run: real photos composed into frames whose parts have known
labels, real models, real MJPEG streams over loopback (one stopped and restarted mid-run) and the real CLI."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import pytest
from conftest import ListOutput, LiveRun, error_lines, filled, side_by_side, write_video
from mjpeg import MjpegServer

from edge_infer.config import load_config
from edge_infer.pipeline.cameras import cameras_of
from edge_infer.run import open_run

V2 = "mobilenet_v2_1.0_224_quant.tflite"
V1_HALF = "mobilenet_v1_0.5_160_quant.tflite"


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_each_region_classifies_its_own_part_of_the_frame(models: Path, images: Path, tmp_path: Path):
    cv2.imwrite(str(tmp_path / "yard.png"), side_by_side(images, "bird.bmp", "parrot.jpg"))
    config = load_config(str(write_config(tmp_path / "config.yaml", f"""
model: {{path: {models / V2}, num_threads: 1}}
postprocess: {{top_k: 1}}
cameras:
  yard:
    source: {{type: images, path: {tmp_path / "yard.png"}}}
    regions:
      feeder: {{box: [0, 0, 0.5, 1]}}
      perch: {{box: [0.5, 0, 0.5, 1], model: {models / V1_HALF}, top_k: 2}}
  porch:
    source: {{type: images, path: {images / "sunflower.bmp"}}}
""")))
    sink = ListOutput()
    with open_run(config, outputs=[sink], environ={}) as run:
        run.execute()
        slots = {id(region.slot) for camera in run.cameras for region in camera.stages.regions}
    by_place = {(r.camera, r.region): r for r in sink.results}
    assert set(by_place) == {("yard", "feeder"), ("yard", "perch"), ("porch", None)}
    assert by_place["yard", "feeder"].top[0].label == "chickadee" and by_place["yard", "feeder"].model == V2[:-7]
    assert by_place["yard", "perch"].top[0].label == "macaw" and by_place["yard", "perch"].model == V1_HALF[:-7]
    assert len(by_place["yard", "perch"].top) == 2 and len(by_place["yard", "feeder"].top) == 1
    assert by_place["porch", None].top[0].label == "daisy"
    assert len(slots) == 2  # one interpreter per distinct model: V2 serves the feeder and the porch
    record = by_place["yard", "feeder"].to_json_dict()
    assert (record["camera"], record["region"]) == ("yard", "feeder")
    assert by_place["porch", None].to_json_dict()["region"] is None


def test_swapped_halves_swap_the_labels(models: Path, images: Path, tmp_path: Path):
    # The same regions on the mirrored composition: a label that followed the region, not the picture, fails.
    cv2.imwrite(str(tmp_path / "yard.png"), side_by_side(images, "parrot.jpg", "bird.bmp"))
    config = load_config(str(write_config(tmp_path / "config.yaml", f"""
model: {{path: {models / V2}, num_threads: 1}}
cameras:
  yard:
    source: {{type: images, path: {tmp_path / "yard.png"}}}
    regions:
      left: {{box: [0, 0, 0.5, 1]}}
      right: {{box: [0.5, 0, 0.5, 1]}}
""")))
    sink = ListOutput()
    with open_run(config, outputs=[sink], environ={}) as run:
        run.execute()
    assert {r.region: r.top[0].label for r in sink.results} == {"left": "macaw", "right": "chickadee"}


def test_a_plain_source_run_is_one_camera_without_names(models: Path, images: Path):
    config = load_config(None, {("model", "path"): (str(models / V2), "--model"),
                                ("source",): ({"type": "images", "path": str(images / "bird.bmp")}, "--source")})
    assert [camera.name for camera in cameras_of(config)] == [""]
    sink = ListOutput()
    with open_run(config, outputs=[sink], environ={}) as run:
        run.execute()
    assert "camera" not in sink.results[0].to_json_dict() and "region" not in sink.results[0].to_json_dict()


# --- the real CLI on real streams ---------------------------------------------------------------------------


@pytest.fixture
def streams(images: Path):
    servers = [MjpegServer(side_by_side(images, "bird.bmp", "parrot.jpg"), fps=15),
               MjpegServer(filled(cv2.imread(str(images / "sunflower.bmp")), 320, 240), fps=15)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def streams_config(tmp_path: Path, models: Path, first_url: str, second_url: str) -> Path:
    return write_config(tmp_path / "config.yaml", f"""
model: {{path: {models / V2}, num_threads: 1}}
postprocess: {{top_k: 1}}
x-stream: &stream {{type: opencv}}
cameras:
  yard:
    source: {{<<: *stream, device: "{first_url}"}}
    regions:
      feeder: {{box: [0, 0, 0.5, 1]}}
      perch: {{box: [0.5, 0, 0.5, 1]}}
  garden:
    source: {{<<: *stream, device: "{second_url}"}}
""")


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def labels_of(results: list[dict]) -> dict[tuple[str, str | None], set[str]]:
    seen: dict[tuple[str, str | None], set[str]] = {}
    for result in results:
        seen.setdefault((result["camera"], result["region"]), set()).add(result["top"][0]["label"])
    return seen


def test_a_stream_lost_mid_run_comes_back_while_the_other_camera_goes_on(models: Path, tmp_path: Path, streams):
    yard, garden = streams
    run = LiveRun(streams_config(tmp_path, models, yard.url, garden.url), tmp_path)
    try:
        wait_until(lambda: {("yard", "feeder"), ("yard", "perch"), ("garden", None)} <= set(labels_of(run.results)))
        assert labels_of(run.results) == {("yard", "feeder"): {"chickadee"}, ("yard", "perch"): {"macaw"},
                                          ("garden", None): {"daisy"}}
        yard.stop()
        time.sleep(1.0)  # the yard's last frames drain
        during = len(run.results)
        time.sleep(2.0)
        outage = run.results[during:]
        assert outage and {r["camera"] for r in outage} == {"garden"}  # the garden never stopped
        yard.start()
        wait_until(lambda: any(r["camera"] == "yard" for r in run.results[during:]))
        frames = [r["frame"] for r in run.results if r["camera"] == "garden"]
        assert frames == sorted(frames)
    finally:
        stderr = run.stop()
    assert run.process.returncode == 0, stderr
    assert "camera yard: source lost" in stderr and "camera yard: opencv stream" in stderr and "is back after" in stderr
    assert not error_lines(stderr)


def test_a_camera_missing_at_start_is_retried_while_the_others_run(models: Path, tmp_path: Path, streams):
    yard, garden = streams
    url = garden.url
    garden.stop()
    run = LiveRun(streams_config(tmp_path, models, yard.url, url), tmp_path)
    try:
        wait_until(lambda: any(r["camera"] == "yard" for r in run.results))
        garden.start()
        wait_until(lambda: any(r["camera"] == "garden" for r in run.results))
    finally:
        stderr = run.stop()
    assert run.process.returncode == 0, stderr
    assert "camera garden: " in stderr and "trying again every 1-30 s" in stderr


def test_no_camera_opening_at_start_is_a_source_error(models: Path, tmp_path: Path, cli, streams):
    yard, garden = streams
    urls = yard.url, garden.url
    for server in streams:
        server.stop()
    done = cli("run", "--config", str(streams_config(tmp_path, models, *urls)))
    assert done.status == 4, done.stderr
    [line] = error_lines(done.stderr)
    assert "no camera could be opened" in line


def test_a_region_too_small_for_the_frames_that_come_is_reported_once(models: Path, images: Path, tmp_path: Path,
                                                                      caplog):
    # The images source declares no size, so the box is checked against the first frame (bird.bmp: 512x343).
    config = load_config(str(write_config(tmp_path / "config.yaml", f"""
model: {{path: {models / V2}, num_threads: 1}}
cameras:
  yard:
    source: {{type: images, path: {images / "bird.bmp"}, loop: true}}
    regions:
      speck: {{box: [0.5, 0.5, 0.01, 0.5]}}
run: {{max_frames: 3}}
""")))
    with caplog.at_level("WARNING"), open_run(config, outputs=[ListOutput()], environ={}) as run:
        run.execute()
    warnings = [r.getMessage() for r in caplog.records if "too few to classify" in r.getMessage()]
    assert warnings == ["camera yard, region speck: only 5x171 pixels of the camera's 512x343 frames, too few to "
                        "classify: make its box larger"]


def test_a_camera_with_regions_gets_its_frames_whole_and_one_without_at_the_models_scale(
        models: Path, images: Path, tmp_path: Path, caplog):
    yard = write_video(tmp_path / "yard.avi", [side_by_side(images, "bird.bmp", "parrot.jpg", half=480)] * 3)
    sunflower = cv2.resize(cv2.imread(str(images / "sunflower.bmp")), (640, 480))
    porch = write_video(tmp_path / "porch.avi", [sunflower] * 3)
    config = load_config(str(write_config(tmp_path / "config.yaml", f"""
model: {{path: {models / V2}, num_threads: 1}}
postprocess: {{top_k: 1}}
cameras:
  yard:
    source: {{type: opencv, device: {yard}}}
    regions:
      feeder: {{box: [0, 0, 0.5, 1]}}
      perch: {{box: [0.5, 0, 0.5, 1]}}
  porch:
    source: {{type: opencv, device: {porch}}}
""")))
    caplog.set_level("INFO", logger="edge_infer.sources.opencv")
    sink = ListOutput()
    with open_run(config, outputs=[sink], environ={}) as run:
        run.execute()
    decoded_reduced = [line for line in caplog.text.splitlines() if "decoding its JPEGs" in line]
    assert len(decoded_reduced) == 1 and "porch.avi: decoding its JPEGs at 1/2 scale" in decoded_reduced[0]
    labels = {(r.camera, r.region): r.top[0].label for r in sink.results}
    assert labels == {("yard", "feeder"): "chickadee", ("yard", "perch"): "macaw", ("porch", None): "daisy"}
