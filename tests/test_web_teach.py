"""The live page's Teach panel (outputs/web/teach.py, static/teach.js) against a real `edge-infer run` watching a
real MJPEG camera: headless Chromium captures, uploads, deletes, trains and uses a model, and the region moves to
it without a restart; the write actions' guards are checked with plain HTTP."""

from __future__ import annotations

import json
import re
import struct
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import filled, need
from mjpeg import MjpegServer
from test_web import LiveRun, running

MODEL = "mobilenet_v1_0.25_128_quant.tflite"


def scene(images: Path, right: str) -> np.ndarray:
    """The porch: a sunflower on the left that never changes, and at the door (the right half) `right`."""
    return np.hstack([filled(cv2.imread(str(images / name)), 320, 320) for name in ("sunflower.bmp", right)])


def porch_run(tmp: Path, models: Path, camera: MjpegServer, web: str = "", teach: str = "") -> LiveRun:
    return LiveRun(tmp, models, None, web=web, model=MODEL, extra=f"""
cameras:
  porch:
    source: {{type: opencv, device: "{camera.url}"}}
    regions:
      door: {{box: [0.5, 0, 0.5, 1]}}
teach:
  directory: {tmp / "teach"}
  max_upload_megabytes: 0.5
{teach}""")


@pytest.fixture
def porch(tmp_path: Path, models: Path, images: Path) -> Iterator[tuple[LiveRun, MjpegServer, Path]]:
    tmp = tmp_path / "porch"
    tmp.mkdir()
    camera = MjpegServer(scene(images, "parrot.jpg"), fps=15)
    camera.start()
    try:
        for run in running(porch_run(tmp, models, camera)):
            yield run, camera, tmp
    finally:
        camera.stop()


def door_result(run: LiveRun) -> tuple[str, str | None]:
    camera = next(c for c in run.status()["cameras"] if c["name"] == "porch")
    region = next(r for r in camera["regions"] if r["name"] == "door")
    top = region["result"]["top"] if region["result"] else []
    return camera["stats"]["regions"]["door"]["model"], top[0]["label"] if top else None


def wait_for_door(run: LiveRun, label: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model, seen = door_result(run)
        if seen == label:
            return model
        time.sleep(0.2)
    raise AssertionError(f"the door never said {label}: {door_result(run)}; {run.stderr()}")


def test_the_panel_in_a_real_browser_teaches_the_door_and_the_region_uses_it(porch, images: Path, models: Path,
                                                                              tmp_path: Path):
    need("chromium")
    playwright = pytest.importorskip("playwright.sync_api")
    run, camera, tmp = porch
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=need("chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1200})
            page.goto(run.url + "/")
            page.wait_for_selector("#teach:not([hidden])")
            message = page.locator("#teach-message")
            expect = playwright.expect
            assert page.locator("#teach-place option").all_inner_texts() == ["porch · door"]

            def capture(label: str, picture: str) -> None:
                camera.show(scene(images, picture))
                time.sleep(0.6)  # frames sent before the change have gone through
                page.fill("#teach-class", label)
                page.click("#teach-capture")
                expect(message).to_have_text(re.compile("^saved"))

            capture("bird", "parrot.jpg")
            capture("bird", "bird.bmp")
            capture("cat", "cat.bmp")
            capture("cat", "grace_hopper.bmp")  # a mistake, deleted below
            page.fill("#teach-class", "cat")
            page.set_input_files("#teach-upload", str(images / "cat_720p.jpg"))
            expect(message).to_have_text(re.compile("^uploaded 1 "))
            cats = page.locator(".samples .class[data-class='cat']")
            cats.locator(".count").filter(has_text="3 samples").wait_for()
            cats.locator("figure").nth(1).locator(".delete").click()  # the second capture: grace_hopper
            cats.locator(".count").filter(has_text="2 samples").wait_for()
            thumbnail = cats.locator("figure img").first
            thumbnail.wait_for()
            assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", thumbnail.element_handle())

            page.click("#teach-train")
            page.locator("#teach-report table").filter(has_text="cat").wait_for(timeout=60_000)
            assert page.locator("#teach-job").inner_text().startswith("trained in")
            page.locator("#teach-use:not([disabled])").click()
            expect(message).to_contain_text("now runs model-")
            page.screenshot(path=str(tmp_path / "teach.png"), full_page=True)
        finally:
            browser.close()
    # The region moved to the taught model in the same process, and tells the door's two classes apart.
    camera.show(scene(images, "parrot.jpg"))
    model = wait_for_door(run, "bird")
    assert model.startswith("model-")
    camera.show(scene(images, "cat.bmp"))
    assert wait_for_door(run, "cat") == model
    assert "camera porch, region door: now model-" in run.stderr()
    samples = sorted(p.parent.name for p in (tmp / "teach" / "porch" / "door" / "samples").rglob("*.jpg"))
    assert samples == ["bird", "bird", "cat", "cat"]
    # Each sample is the door's crop at the camera's full size (320 px wide), not the stream's or the model's.
    assert cv2.imread(str(next((tmp / "teach" / "porch" / "door" / "samples" / "bird").glob("*.jpg")))).shape == \
        (320, 320, 3)

    # After a restart, the door still runs it (the choice is kept beside the samples, not in /etc).
    run.stop()
    again = porch_run(tmp, models, camera)
    for restarted in running(again):
        assert wait_for_door(restarted, "cat") == model
        restarted.stop()


def post(run: LiveRun, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(run.url + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        data = error.read()
        return error.code, json.loads(data) if data.startswith(b"{") else {"text": data.decode()}


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: what an image bomb sends."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_writes_need_the_pages_token_from_this_site_and_bounded_checked_photos(porch, images: Path):
    run, _, tmp = porch
    _, _, body = run.get("/api/teach")
    token = json.loads(body)["token"]
    capture = json.dumps({"camera": "porch", "region": "door", "class": "open"}).encode()
    as_json = {"Content-Type": "application/json"}
    assert post(run, "/api/teach/capture", capture, as_json)[0] == 403
    assert post(run, "/api/teach/capture", capture, {**as_json, "X-Edge-Infer-Token": "guess"})[0] == 403
    signed = {**as_json, "X-Edge-Infer-Token": token}
    assert post(run, "/api/teach/capture", capture, {**signed, "Origin": "http://evil.example"})[0] == 403
    assert post(run, "/api/teach/capture", capture, {**signed, "Content-Type": "text/plain"})[0] == 415
    code, answer = post(run, "/api/teach/capture", json.dumps({"camera": "porch", "region": "door",
                                                               "class": "a/b"}).encode(), signed)
    assert code == 400 and "not a class name" in answer["error"]
    code, answer = post(run, "/api/teach/capture", json.dumps({"camera": "porch", "region": "gate",
                                                               "class": "open"}).encode(), signed)
    assert code == 400 and "no region porch/gate" in answer["error"]
    upload = "/api/teach/upload?camera=porch&region=door&class=open"
    photo = {"X-Edge-Infer-Token": token, "Content-Type": "image/png"}
    code, answer = post(run, upload, bytes(600_000), photo)
    assert code == 413 and "max_upload_megabytes" in answer["text"]
    code, answer = post(run, upload, png_claiming(60000, 60000), photo)
    assert code == 400 and "million pixels" in answer["error"]
    code, answer = post(run, upload, b"not an image at all", photo)
    assert code == 400 and "cannot be used" in answer["error"]
    assert not (tmp / "teach" / "porch" / "door" / "samples" / "open").exists()  # nothing refused was kept
    status, _, _ = run.get("/api/teach/sample?camera=porch&region=door&class=bird&name=../../../in-use.json")
    assert status == 404
    assert run.process.poll() is None and "Traceback" not in run.stderr()


def test_a_page_anyone_can_reach_without_a_password_cannot_teach(tmp_path: Path, models: Path, images: Path):
    camera = MjpegServer(scene(images, "parrot.jpg"), fps=15)
    camera.start()
    try:
        for run in running(porch_run(tmp_path, models, camera, web="  host: 0.0.0.0")):
            _, _, body = run.get("/api/teach")
            state = json.loads(body)
            assert state["writable"] is False and state["token"] is None
            assert "web.credentials_file" in state["why_not"]
            code, answer = post(run, "/api/teach/train", b"{}", {"Content-Type": "application/json",
                                                                  "X-Edge-Infer-Token": "x"})
            assert code == 403 and "read-only" in answer["error"]
            run.stop()
    finally:
        camera.stop()
