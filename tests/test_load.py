"""`edge-infer bench --config`: a whole configuration's load, measured by the real CLI on real models and photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
from conftest import error_lines, side_by_side

V2 = "mobilenet_v2_1.0_224_quant"
V1_HALF = "mobilenet_v1_0.5_160_quant"


def test_bench_config_measures_every_camera_and_region(cli, tmp_path: Path, models: Path, images: Path):
    cv2.imwrite(str(tmp_path / "yard.png"), side_by_side(images, "bird.bmp", "parrot.jpg"))
    config = tmp_path / "config.yaml"
    config.write_text(f"""model: {{path: {models / V2}.tflite, num_threads: 1}}
cameras:
  yard:
    source: {{type: images, path: {tmp_path / "yard.png"}, loop: true}}
    regions:
      feeder: {{box: [0, 0, 0.5, 1]}}
      perch: {{box: [0.5, 0, 0.5, 1], model: {models / V1_HALF}.tflite}}
  garden:
    source: {{type: images, path: {images / "sunflower.bmp"}, loop: true}}
""")
    done = cli("bench", "--config", str(config), "--seconds", "1.5", "--json", json_lines=False, timeout=180)
    assert done.status == 0, done.stderr
    load = json.loads(done.stdout)
    places = {(place["camera"], place["region"]): place for place in load["places"]}
    assert set(places) == {("yard", "feeder"), ("yard", "perch"), ("garden", None)}
    assert places["yard", "perch"]["model"] == V1_HALF and places["garden", None]["model"] == V2
    assert all(place["results_per_s"] > 0 and place["inference_p50_ms"] > 0 for place in places.values())
    assert load["models"] == 2  # one interpreter per distinct model: V2 serves the feeder and the garden
    assert set(load["frames_per_s"]) == {"yard", "garden"}
    assert abs(load["results_per_s"] - sum(p["results_per_s"] for p in places.values())) < 0.1
    assert load["peak_rss_mb"] > 0 and load["cpu_percent"] > 0

    table = cli("bench", "--config", str(config), "--seconds", "0.5", json_lines=False, timeout=180)
    assert table.status == 0 and "yard" in table.stdout and "perch" in table.stdout and "results/s" in table.stdout


def test_bench_config_reports_a_bad_configuration_with_its_line(cli, tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text("cameras:\n  yard:\n    source: {type: images, path: /nowhere}\n    regions:\n"
                      "      door: {box: [0.5, 0, 0.6, 1]}\n")
    done = cli("bench", "--config", str(config), json_lines=False)
    assert done.status == 2
    [line] = error_lines(done.stderr)
    assert f"{config}:5: cameras.yard.regions.door.box: the box reaches outside the frame" in line


def test_bench_config_with_no_camera_that_opens_is_a_source_error(cli, tmp_path: Path, models: Path):
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{path: {models / V2}.tflite}}\nsource: {{type: images, path: {tmp_path / 'none'}}}\n")
    done = cli("bench", "--config", str(config), "--seconds", "0.5", json_lines=False, timeout=120)
    assert done.status == 4, done.stderr
    assert len(error_lines(done.stderr)) == 1 and "Traceback" not in done.stderr


def test_tune_picks_for_a_cameras_configuration_by_its_slowest_camera(cli, tmp_path: Path, models: Path,
                                                                       images: Path):
    config = tmp_path / "config.yaml"
    config.write_text(f"""# my cameras
model:
  path: {models / V2}.tflite  # the default for regions without their own
cameras:
  yard:
    source: {{type: images, path: {images / "bird.bmp"}, loop: true}}
    regions:
      feeder: {{box: [0, 0, 0.5, 1]}}
      perch: {{box: [0.5, 0, 0.5, 1]}}
  garden:
    source: {{type: images, path: {images / "sunflower.bmp"}, loop: true}}
""")
    candidates = [str(models / "mobilenet_v1_0.25_128_quant.tflite"), str(models / f"{V1_HALF}.tflite")]
    done = cli("tune", "--fps", "2", "--config", str(config), "--threads", "1", "--quick", "--write", str(config),
               *candidates, json_lines=False, timeout=300)
    assert done.status == 0, done.stderr
    # Both reach 2 fps on every camera; the more accurate (published top-1) one is chosen and written.
    assert f"chosen for 2 fps (with a 15% margin): {V1_HALF}, 1 thread(s)" in done.stderr
    text = config.read_text()
    assert f"path: {models / V1_HALF}.tflite  # the default" in text and text.startswith("# my cameras")
    assert "num_threads: 1" in text and "perch:" in text

    unreachable = cli("tune", "--fps", "100000", "--config", str(config), "--threads", "1", "--quick",
                      candidates[0], json_lines=False, timeout=300)
    assert unreachable.status == 1 and "for every camera" in unreachable.stderr
    latency = cli("tune", "--latency-ms", "5", "--config", str(config), json_lines=False)
    assert latency.status == 2 and "with cameras:, tune takes --fps" in latency.stderr
